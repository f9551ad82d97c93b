package procfs

import (
	"errors"
	"testing"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		line    string
		want    Stat
		wantErr bool
	}{
		{
			name: "plain",
			line: "1234 (sleep) S 1000 1234 1000 0 -1 4194304 100 5 6 8 7 3 11 13 20 0 2 0 55555 8192000 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
			want: Stat{PID: 1234, PPID: 1000, PGRP: 1234, Session: 1000, State: 'S', MinFlt: 100, CMinFlt: 5, MajFlt: 6, CMajFlt: 8, UTime: 7, STime: 3, CUTime: 11, CSTime: 13, NumThreads: 2, StartTime: 55555, VSize: 8192000, RSS: 250},
		},
		{
			name: "comm with spaces and parens",
			line: "42 (evil) (x ) y) Z 7 42 42 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 99 0 0 0",
			want: Stat{PID: 42, PPID: 7, PGRP: 42, Session: 42, State: 'Z', UTime: 1, STime: 2, CUTime: 3, CSTime: 4, NumThreads: 1, StartTime: 99},
		},
		{name: "empty", line: "", wantErr: true},
		{name: "no comm", line: "12 S 1 2 3", wantErr: true},
		{name: "truncated", line: "12 (a) S 1 2 3 4", wantErr: true},
		{name: "garbage number", line: "12 (a) S x 2 3 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 99 0 0", wantErr: true},
		{name: "bad pid", line: "x (a) S 1 2 3 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 99 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tt.line))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 99 0 0"))
	f.Add([]byte("1 ()) S"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseStat(b) // must not panic
	})
}
