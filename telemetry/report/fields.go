package report

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// workerField is one field of a worker entry (usageJSON) that ?fields=
// may select.
type workerField struct {
	name      string
	index     int
	omitEmpty bool
}

// workerFields are usageJSON's JSON fields in their order, but for
// stderr_tail (the one-worker view's).
var workerFields = func() []workerField {
	t := reflect.TypeFor[usageJSON]()
	var out []workerField
	for i := range t.NumField() {
		name, opts, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" || name == "stderr_tail" {
			continue
		}
		out = append(out, workerField{name: name, index: i, omitEmpty: opts == "omitempty"})
	}
	return out
}()

// WorkerFields lists the names ?fields= accepts, in the order of a full
// worker entry.
func WorkerFields() []string {
	out := make([]string, len(workerFields))
	for i, f := range workerFields {
		out[i] = f.name
	}
	return out
}

// fieldSet is a selection of worker fields: all of them (key "") or the
// listed ones, in entry order, id always among them.
type fieldSet struct {
	key    string
	fields []workerField
}

// parseFields reads ?fields= (comma lists, possibly repeated); absent or
// empty means every field.
func parseFields(values []string) (fieldSet, error) {
	want := map[string]bool{}
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !slices.ContainsFunc(workerFields, func(f workerField) bool { return f.name == name }) {
				return fieldSet{}, fmt.Errorf("unknown worker field %q in fields=; known: %s", name, strings.Join(WorkerFields(), ","))
			}
			want[name] = true
		}
	}
	if len(want) == 0 {
		return fieldSet{}, nil
	}
	want["id"] = true
	var fs fieldSet
	var names []string
	for _, f := range workerFields {
		if want[f.name] {
			fs.fields = append(fs.fields, f)
			names = append(names, f.name)
		}
	}
	if len(fs.fields) == len(workerFields) {
		return fieldSet{}, nil
	}
	fs.key = strings.Join(names, ",")
	return fs, nil
}

// selected encodes worker entries with only the fields of a fieldSet
// (stderr_tail too, when set).
type selected struct {
	ws     []usageJSON
	fields fieldSet
}

func (s selected) MarshalJSON() ([]byte, error) {
	if s.fields.fields == nil {
		return json.Marshal(s.ws)
	}
	var b bytes.Buffer
	b.Grow(len(s.ws) * 32 * len(s.fields.fields))
	b.WriteByte('[')
	for i := range s.ws {
		if i > 0 {
			b.WriteByte(',')
		}
		v := reflect.ValueOf(&s.ws[i]).Elem()
		b.WriteByte('{')
		first := true
		for _, f := range s.fields.fields {
			fv := v.Field(f.index)
			if f.omitEmpty && fv.IsZero() {
				continue
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.WriteString(strconv.Quote(f.name)) // names are plain ASCII
			b.WriteByte(':')
			if err := appendValue(&b, fv); err != nil {
				return nil, err
			}
		}
		if st := s.ws[i].StderrTail; st != nil {
			if !first {
				b.WriteByte(',')
			}
			b.WriteString(`"stderr_tail":`)
			if err := appendValue(&b, reflect.ValueOf(*st)); err != nil {
				return nil, err
			}
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// appendValue writes v as JSON, the common scalars without going through
// encoding/json.
func appendValue(b *bytes.Buffer, v reflect.Value) error {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			b.WriteString("null")
			return nil
		}
		v = v.Elem()
	}
	var scratch [32]byte
	switch v.Kind() {
	case reflect.Int, reflect.Int64:
		b.Write(strconv.AppendInt(scratch[:0], v.Int(), 10))
		return nil
	case reflect.Uint64:
		b.Write(strconv.AppendUint(scratch[:0], v.Uint(), 10))
		return nil
	case reflect.Bool:
		b.Write(strconv.AppendBool(scratch[:0], v.Bool()))
		return nil
	}
	j, err := json.Marshal(v.Interface())
	if err != nil {
		return err
	}
	b.Write(j)
	return nil
}

// acceptsGzip reports whether Accept-Encoding admits gzip: listed with a
// q above 0, or * above 0 without gzip;q=0.
func acceptsGzip(values []string) bool {
	gz, star := -1.0, -1.0
	for _, header := range values {
		for part := range strings.SplitSeq(header, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(p), "q="); ok {
					if f, err := strconv.ParseFloat(v, 64); err == nil {
						q = f
					}
				}
			}
			switch strings.ToLower(strings.TrimSpace(coding)) {
			case "gzip", "x-gzip":
				gz = max(gz, q)
			case "*":
				star = max(star, q)
			}
		}
	}
	if gz >= 0 {
		return gz > 0
	}
	return star > 0
}

// gzipped compresses b (BestSpeed: the report is re-encoded every second
// or so, and the faster level loses only a few per cent of the ratio on
// this JSON).
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b) / 6)
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}
