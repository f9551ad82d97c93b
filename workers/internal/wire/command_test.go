package wire

import (
	"strings"
	"testing"
)

// TestParseCommandRefusesAmbiguity: a command the worker might read
// differently from the supervisor is refused (issue 13, item 5), and
// ordinary commands still pass.
func TestParseCommandRefusesAmbiguity(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, cmd string
		want      string // "" = accepted, else part of the error
	}{
		{"plain", `{"type":"get_state"}`, ""},
		{"nested and arrays", `{"type":"prompt","a":{"b":[1,{"c":2},{"c":3}],"d":{"b":1}},"e":[]}`, ""},
		{"same key in sibling objects", `{"type":"x","l":[{"k":1},{"k":2}]}`, ""},
		{"key equal to a value", `{"type":"type","x":"type"}`, ""},
		{"whitespace around", " \n\t{\"type\":\"get_state\"} \r\n", ""},
		{"unicode key", `{"type":"x","ключ":1,"КЛЮЧ2":2}`, ""},
		{"top-level duplicate", `{"type":"get_state","type":"crash"}`, `duplicate key "type"`},
		{"escaped duplicate", `{"type":"get_state","\u0074ype":"crash"}`, `duplicate key "type"`},
		{"nested duplicate", `{"type":"prompt","opts":{"a":1,"b":{"c":1,"c":2}}}`, `duplicate key "c"`},
		{"duplicate in array element", `{"type":"x","l":[{"k":1,"k":2}]}`, `duplicate key "k"`},
		{"case-folded duplicate", `{"type":"get_state","TYPE":"crash"}`, "differ only in case"},
		{"kelvin sign folds to k", "{\"type\":\"x\",\"k\":1,\"\u212a\":2}", "differ only in case"},
		{"invalid UTF-8 in value", "{\"type\":\"get_state\",\"m\":\"\xc3\x28\"}", "invalid UTF-8 at byte 25"},
		{"invalid UTF-8 in key", "{\"type\":\"x\",\"\xff\":1}", "invalid UTF-8"},
		{"trailing object", `{"type":"get_state"} {"type":"crash"}`, "after the object"},
		{"trailing garbage", `{"type":"get_state"}x`, "invalid character"},
		{"trailing array", `{"type":"get_state"}[]`, "after the object"},
		{"truncated", `{"type":"get_state"`, "unexpected EOF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			typ, _, err := ParseCommand([]byte(c.cmd))
			if c.want == "" {
				if err != nil || typ == "" {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want an error containing %q", err, c.want)
			}
		})
	}
}
