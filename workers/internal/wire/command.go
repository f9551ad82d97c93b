package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// checkUnambiguous refuses a command that another JSON parser (the
// worker's) might read differently from the supervisor, which routes,
// labels and counts it by what it reads: invalid UTF-8 (replaced by one
// parser, kept or refused by another), an object holding the same key
// twice at any depth (first wins in some parsers, last in others), keys of
// one object that differ only in case (Go's encoding/json matches struct
// fields case-insensitively), and anything after the first value.
func checkUnambiguous(cmd []byte) error {
	if !utf8.Valid(cmd) {
		return fmt.Errorf("invalid UTF-8 at byte %d", invalidUTF8At(cmd))
	}
	type frame struct {
		keys      map[string]string // folded key → key as written; nil for an array
		expectKey bool
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(cmd))
	values := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if len(stack) > 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
		if len(stack) == 0 && values > 0 {
			return fmt.Errorf("data after the object at byte %d", dec.InputOffset()-1)
		}
		top := len(stack) - 1
		if s, ok := tok.(string); ok && top >= 0 && stack[top].keys != nil && stack[top].expectKey {
			f := foldKey(s)
			if prev, dup := stack[top].keys[f]; dup {
				if prev == s {
					return fmt.Errorf("duplicate key %q", s)
				}
				return fmt.Errorf("keys %q and %q differ only in case", prev, s)
			}
			stack[top].keys[f] = s
			stack[top].expectKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{keys: map[string]string{}, expectKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:top]
		}
		// A value ended (a scalar or a closed object or array).
		if len(stack) == 0 {
			values++
		} else if stack[len(stack)-1].keys != nil {
			stack[len(stack)-1].expectKey = true
		}
	}
}

// foldKey maps s to one representative of its case-folding class, so two
// keys equal under Unicode simple folding (as strings.EqualFold compares)
// map to the same string.
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		rep := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			rep = min(rep, f)
		}
		return rep
	}, s)
}

// invalidUTF8At returns the offset of the first invalid UTF-8 sequence in
// b, or len(b).
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// ParseCommand checks that cmd is a JSON object with a non-empty string
// type that no parser can read differently (checkUnambiguous).
func ParseCommand(cmd []byte) (string, map[string]json.RawMessage, error) {
	if err := checkUnambiguous(cmd); err != nil {
		return "", nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(cmd, &obj); err != nil || obj == nil {
		if err == nil {
			err = errors.New("null")
		}
		return "", nil, fmt.Errorf("not a JSON object: %w", err)
	}
	var typ string
	if err := json.Unmarshal(obj["type"], &typ); err != nil || typ == "" {
		return "", nil, errors.New(`"type" must be a non-empty string`)
	}
	return typ, obj, nil
}

// RestoreID puts the caller's own id back into a response line.
func RestoreID(line []byte, id json.RawMessage) []byte {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return line
	}
	obj["id"] = id
	out, err := json.Marshal(obj)
	if err != nil {
		return line
	}
	return out
}

// Truncate is b cut to n bytes (an ellipsis marks a cut), as valid UTF-8.
func Truncate(b []byte, n int) string {
	if len(b) > n {
		return string(bytes.ToValidUTF8(b[:n], nil)) + "…"
	}
	return string(bytes.ToValidUTF8(b, nil))
}
