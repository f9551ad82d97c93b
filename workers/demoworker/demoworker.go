package demoworker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// RoleEnv selects what Main runs: "worker" or "child".
const RoleEnv = "WORKERSCOPE_DEMO_ROLE"

const (
	childMSEnv     = "WORKERSCOPE_DEMO_CHILD_MS"
	childCPUEnv    = "WORKERSCOPE_DEMO_CHILD_CPU_MS"
	childOrphanEnv = "WORKERSCOPE_DEMO_CHILD_ORPHAN"
)

// Main runs the role named by RoleEnv (default "worker") on the process's
// stdio and returns the exit code. Binaries that embed the demo worker
// (workerscope itself, test binaries) call it early in main/TestMain when
// RoleEnv is set.
func Main() int {
	switch os.Getenv(RoleEnv) {
	case "child":
		return runChild()
	default:
		if msg := os.Getenv("WORKERSCOPE_DEMO_CRASH_AT_START"); msg != "" {
			fmt.Fprintln(os.Stderr, msg)
			return 3
		}
		if os.Getenv("WORKERSCOPE_DEMO_IGNORE_SIGTERM") == "1" {
			signal.Ignore(syscall.SIGTERM)
		}
		if err := Run(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "demo-worker:", err)
			return 1
		}
		return 0
	}
}

// worker is one demo worker's state.
type worker struct {
	outMu sync.Mutex
	out   *bufio.Writer

	mu        sync.Mutex
	held      [][]byte
	heldMiB   int
	prompts   int
	children  int
	cancel    context.CancelFunc
	streaming bool
	wg        sync.WaitGroup
}

// Run serves commands from in until EOF or ctx ends.
func Run(ctx context.Context, in io.Reader, out io.Writer) error {
	w := &worker{out: bufio.NewWriter(out)}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		if ctx.Err() != nil {
			break
		}
		line := bytes.TrimSuffix(sc.Bytes(), []byte{'\r'})
		w.handle(ctx, line)
	}
	w.mu.Lock()
	if w.cancel != nil {
		w.cancel()
	}
	w.mu.Unlock()
	w.wg.Wait()
	return sc.Err()
}

type command struct {
	ID          json.RawMessage `json:"id,omitempty"`
	Type        string          `json:"type"`
	Message     string          `json:"message"`
	CPUMS       int             `json:"cpu_ms"`
	MemMiB      int             `json:"mem_mib"`
	Events      *int            `json:"events"`
	ChildMS     int             `json:"child_ms"`
	ChildCPUMS  int             `json:"child_cpu_ms"`
	ChildSetsid bool            `json:"child_setsid"`
	ChildOrphan bool            `json:"child_orphan"`
	MS          int             `json:"ms"`
	Lines       int             `json:"lines"`
	Bytes       int             `json:"bytes"`
	Kind        string          `json:"kind"`
	Code        int             `json:"code"`
	MiB         int             `json:"mib"`
	Count       int             `json:"count"`
	Argv        []string        `json:"argv"`
	Addr        string          `json:"addr"`
	MPTCP       bool            `json:"mptcp"`
	Listen      bool            `json:"listen"`
	// agent_events: the prompt streams pi's model-call and tool-call
	// events (runAgent).
	AgentEvents  bool     `json:"agent_events"`
	Tool         string   `json:"tool"`
	Turns        int      `json:"turns"`
	InputTokens  *int     `json:"input_tokens"`
	OutputTokens *int     `json:"output_tokens"`
	CacheTokens  int      `json:"cache_tokens"`
	CostUSD      *float64 `json:"cost_usd"`
	ToolError    bool     `json:"tool_error"`
}

func (w *worker) emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"type":"error","error":"marshal failed"}`)
	}
	w.outMu.Lock()
	defer w.outMu.Unlock()
	w.out.Write(b)
	w.out.WriteByte('\n')
	w.out.Flush()
}

func (w *worker) respond(c *command, data any, err error) {
	r := map[string]any{"type": "response", "command": c.Type, "success": err == nil}
	if len(c.ID) > 0 {
		r["id"] = c.ID
	}
	if err != nil {
		r["error"] = err.Error()
	} else if data != nil {
		r["data"] = data
	}
	w.emit(r)
}

func (w *worker) handle(ctx context.Context, line []byte) {
	var c command
	if err := json.Unmarshal(line, &c); err != nil {
		w.respond(&command{Type: "parse"}, nil, fmt.Errorf("Failed to parse command: %v", err))
		return
	}
	switch c.Type {
	case "prompt":
		w.respond(&c, nil, w.startPrompt(ctx, &c))
	case "get_state":
		w.mu.Lock()
		st := map[string]any{"pid": os.Getpid(), "held_mib": w.heldMiB, "streaming": w.streaming, "prompts": w.prompts, "children": w.children}
		w.mu.Unlock()
		w.respond(&c, st, nil)
	case "abort":
		w.mu.Lock()
		if w.cancel != nil {
			w.cancel()
		}
		w.mu.Unlock()
		w.respond(&c, nil, nil)
	case "sleep":
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			time.Sleep(time.Duration(c.MS) * time.Millisecond)
			w.respond(&c, nil, nil)
		}()
	case "flood":
		w.flood(&c)
		w.respond(&c, map[string]any{"lines": c.Lines}, nil)
	case "crash":
		msg := c.Message
		if msg == "" {
			msg = "demo-worker: crashing on request"
		}
		fmt.Fprintln(os.Stderr, msg)
		code := c.Code
		if code == 0 {
			code = 2
		}
		os.Exit(code)
	case "hold":
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.hold(max(c.MiB, 0))
			time.Sleep(time.Duration(c.MS) * time.Millisecond)
			w.respond(&c, map[string]any{"held_mib": c.MiB}, nil)
		}()
	case "fork":
		started, failed, err := w.fork(c.Count, c.MS)
		data := map[string]any{"started": started, "failed": failed}
		if err != nil {
			data["error"] = err.Error()
		}
		w.respond(&c, data, nil)
	case "exec":
		w.respond(&c, runExec(ctx, c.Argv, c.MS), nil)
	case "dial":
		if c.Listen {
			w.respond(&c, listen(c.Addr), nil)
		} else {
			w.respond(&c, dial(c.Addr, c.MS, c.MPTCP), nil)
		}
	case "escape":
		pid, err := escape(c.MS)
		w.respond(&c, map[string]any{"pid": pid}, err)
	case "work":
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			data, err := w.work(ctx, &c)
			w.respond(&c, data, err)
		}()
	case "stderr":
		n := max(c.Lines, 1)
		for i := 0; i < n; i++ {
			msg := c.Message
			if msg == "" {
				msg = "demo-worker: stderr line"
			}
			if n > 1 {
				msg += " " + strconv.Itoa(i+1)
			}
			fmt.Fprintln(os.Stderr, msg)
		}
		time.Sleep(time.Duration(c.MS) * time.Millisecond)
		w.respond(&c, map[string]any{"lines": n}, nil)
	case "ignore_sigterm":
		signal.Ignore(syscall.SIGTERM)
		w.respond(&c, nil, nil)
	case "stall":
		// Answer, then stop reading stdin: commands pile up in the pipe
		// until it is full and the supervisor's writes block.
		w.respond(&c, nil, nil)
		if c.MS > 0 {
			select {
			case <-time.After(time.Duration(c.MS) * time.Millisecond):
			case <-ctx.Done():
			}
		} else {
			<-ctx.Done()
		}
	default:
		w.respond(&c, nil, fmt.Errorf("Unknown command: %s", c.Type))
	}
}

// work burns cpu_ms in the worker and child_cpu_ms in a child, holding
// mem_mib meanwhile, and returns once the child has exited and been reaped.
func (w *worker) work(ctx context.Context, c *command) (any, error) {
	if c.MemMiB > 0 {
		w.hold(c.MemMiB)
	}
	var child *exec.Cmd
	if c.ChildCPUMS > 0 || c.ChildMS > 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		child = exec.Command(exe)
		child.Env = append(os.Environ(), RoleEnv+"=child",
			childMSEnv+"="+strconv.Itoa(c.ChildMS), childCPUEnv+"="+strconv.Itoa(c.ChildCPUMS))
		if err := child.Start(); err != nil {
			return nil, err
		}
		w.mu.Lock()
		w.children++
		w.mu.Unlock()
	}
	events := 0
	if c.Events != nil {
		events = max(*c.Events, 0)
	}
	slice := time.Duration(c.CPUMS) * time.Millisecond / time.Duration(max(events, 1))
	for i := 0; i < max(events, 1); i++ {
		burnCPU(ctx, slice)
		if i < events {
			w.emit(map[string]any{"type": "message_update", "assistantMessageEvent": map[string]any{
				"type": "text_delta", "delta": fmt.Sprintf("work (%d/%d)", i+1, events)}})
		}
	}
	if child != nil {
		if err := child.Wait(); err != nil { // reaped: its CPU time is in our cutime
			return nil, err
		}
	}
	return map[string]any{"cpu_ms": c.CPUMS, "child_cpu_ms": c.ChildCPUMS}, nil
}

func (w *worker) flood(c *command) {
	size := max(c.Bytes, 1)
	w.outMu.Lock()
	defer w.outMu.Unlock()
	junk := bytes.Repeat([]byte("x"), size)
	for i := 0; i < c.Lines; i++ {
		if c.Kind == "oversize" {
			w.out.WriteString(`{"type":"message_update","junk":"`)
			w.out.Write(junk)
			w.out.WriteString("\"}\n")
		} else {
			w.out.Write(junk)
			w.out.WriteByte('\n')
		}
	}
	w.out.Flush()
}

func (w *worker) startPrompt(ctx context.Context, c *command) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.streaming {
		return fmt.Errorf("Agent is already processing")
	}
	pctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	w.streaming = true
	w.prompts++
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer cancel()
		w.runPrompt(pctx, c)
		w.mu.Lock()
		w.streaming = false
		w.cancel = nil
		w.mu.Unlock()
	}()
	return nil
}

func (w *worker) runPrompt(ctx context.Context, c *command) {
	if c.AgentEvents {
		w.runAgent(ctx, c)
		return
	}
	w.emit(map[string]any{"type": "agent_start"})
	if c.MemMiB > 0 {
		w.hold(c.MemMiB)
	} else if c.MemMiB < 0 {
		w.hold(0)
	}
	if c.ChildMS > 0 || c.ChildCPUMS > 0 {
		if err := w.startChild(c); err != nil {
			w.emit(map[string]any{"type": "message_update", "error": err.Error()})
		}
	}
	events := 3
	if c.Events != nil {
		events = max(*c.Events, 0)
	}
	slice := time.Duration(c.CPUMS) * time.Millisecond / time.Duration(max(events, 1))
	for i := 0; i < max(events, 1); i++ {
		if ctx.Err() != nil {
			break
		}
		burnCPU(ctx, slice)
		if i < events {
			w.emit(map[string]any{"type": "message_update", "assistantMessageEvent": map[string]any{
				"type": "text_delta", "delta": fmt.Sprintf("%s (%d/%d)", c.Message, i+1, events),
			}})
		}
	}
	w.emit(map[string]any{"type": "agent_end", "aborted": ctx.Err() != nil})
}

// hold replaces the held memory with mib MiB of touched pages.
func (w *worker) hold(mib int) {
	var held [][]byte
	for i := 0; i < mib; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		held = append(held, b)
	}
	w.mu.Lock()
	w.held = held
	w.heldMiB = mib
	w.mu.Unlock()
}

// forkHeadroom is how many sleepers fork lets go again once a fork has
// been refused, so that the worker's own runtime can still start threads.
const forkHeadroom = 4

// fork starts count single-threaded sleepers, sequentially, and reaps
// them from one goroutine. A refused fork (a pids limit) ends it: with the
// worker's tasks at the limit, the Go runtime could not start a thread it
// needs (to run a goroutine while others are blocked in system calls, as
// the reaper is) and would abort, so the last forkHeadroom sleepers are
// stopped again. started counts the sleepers left running, failed those
// asked for and not running.
func (w *worker) fork(count, ms int) (started, failed int, first error) {
	secs := strconv.FormatFloat(float64(max(ms, 1))/1000, 'f', 3, 64)
	var cmds []*exec.Cmd
	for range count {
		cmd := exec.Command("sleep", secs)
		if err := cmd.Start(); err != nil {
			first = err
			keep := max(len(cmds)-forkHeadroom, 0)
			for _, c := range cmds[keep:] {
				_ = c.Process.Kill()
				_ = c.Wait()
			}
			cmds = cmds[:keep]
			break
		}
		cmds = append(cmds, cmd)
	}
	started, failed = len(cmds), count-len(cmds)
	w.mu.Lock()
	w.children += started
	w.mu.Unlock()
	go func() {
		for _, c := range cmds {
			_ = c.Wait()
		}
	}()
	return started, failed, first
}

func (w *worker) startChild(c *command) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), RoleEnv+"=child",
		childMSEnv+"="+strconv.Itoa(c.ChildMS), childCPUEnv+"="+strconv.Itoa(c.ChildCPUMS))
	if c.ChildOrphan {
		cmd.Env = append(cmd.Env, childOrphanEnv+"=1")
	}
	if c.ChildSetsid {
		cmd.SysProcAttr = setsid()
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	w.mu.Lock()
	w.children++
	w.mu.Unlock()
	go func() { _ = cmd.Wait() }() // reap: its CPU time moves into ours
	return nil
}

// runChild burns CPU, then lives on for the rest of its time. As an
// orphan-maker it starts the real child and exits at once.
func runChild() int {
	ms, _ := strconv.Atoi(os.Getenv(childMSEnv))
	cpu, _ := strconv.Atoi(os.Getenv(childCPUEnv))
	if os.Getenv(childOrphanEnv) == "1" {
		exe, err := os.Executable()
		if err != nil {
			return 1
		}
		cmd := exec.Command(exe)
		env := []string{}
		for _, kv := range os.Environ() {
			if !bytes.HasPrefix([]byte(kv), []byte(childOrphanEnv+"=")) {
				env = append(env, kv)
			}
		}
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			return 1
		}
		return 0
	}
	start := time.Now()
	burnCPU(context.Background(), time.Duration(cpu)*time.Millisecond)
	if rest := time.Duration(ms)*time.Millisecond - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
	return 0
}

// TestMain lets a test binary double as the demo worker: call it from a
// package's TestMain and give the Manager TestCommand, and the tests spawn
// real subprocesses that speak the real protocol.
func TestMain(m interface{ Run() int }) {
	if os.Getenv(RoleEnv) != "" {
		os.Exit(Main())
	}
	os.Exit(m.Run())
}

// TestCommand is the command and environment that run the calling test
// binary as the demo worker (see TestMain).
func TestCommand() (argv, env []string) {
	return []string{os.Args[0]}, []string{RoleEnv + "=worker"}
}

// runExec runs argv (fault injection: what a model-chosen shell command
// would do) and reports {"code", "stdout", "stderr"} (each output cut at
// 4 KiB; code -1 with "error" when it could not start). ms bounds it
// (default 10 s).
func runExec(ctx context.Context, argv []string, ms int) map[string]any {
	if len(argv) == 0 {
		return map[string]any{"code": -1, "error": "empty argv"}
	}
	if ms <= 0 {
		ms = 10000
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	res := map[string]any{}
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			res["error"] = err.Error()
		}
	}
	cut := func(b []byte) string {
		if len(b) > 4096 {
			b = b[:4096]
		}
		return string(b)
	}
	res["code"], res["stdout"], res["stderr"] = code, cut(out.Bytes()), cut(errb.Bytes())
	return res
}

// dial opens a TCP connection to addr (Multipath TCP with mptcp) and
// closes it: {"connected": true} or {"connected": false, "error"}. ms
// bounds it (default 3 s).
func dial(addr string, ms int, mptcp bool) map[string]any {
	if ms <= 0 {
		ms = 3000
	}
	d := net.Dialer{Timeout: time.Duration(ms) * time.Millisecond}
	d.SetMultipathTCP(mptcp)
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return map[string]any{"connected": false, "error": err.Error()}
	}
	_ = c.Close()
	return map[string]any{"connected": true}
}

// listen binds a TCP listener on addr and closes it: {"listening": true}
// or {"listening": false, "error"}.
func listen(addr string) map[string]any {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return map[string]any{"listening": false, "error": err.Error()}
	}
	_ = l.Close()
	return map[string]any{"listening": true}
}

// runAgent streams what pi streams for a run with tool calls: per turn an
// assistant message (message_start, message_end with usage and cost) that
// asks for a tool, the tool's execution (tool_execution_start, a share of
// cpu_ms burnt, tool_execution_end) and its result message; then a final
// assistant message and agent_end. abort ends it early (the last message
// then says stopReason "aborted").
func (w *worker) runAgent(ctx context.Context, c *command) {
	in, out, cost := 1000, 100, 0.001
	if c.InputTokens != nil {
		in = *c.InputTokens
	}
	if c.OutputTokens != nil {
		out = *c.OutputTokens
	}
	if c.CostUSD != nil {
		cost = *c.CostUSD
	}
	tool := c.Tool
	if tool == "" {
		tool = "bash"
	}
	turns := max(c.Turns, 1)
	assistant := func(stop string, usage bool) map[string]any {
		u := map[string]any{"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0,
			"cost": map[string]any{"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0}}
		if usage {
			u = map[string]any{"input": in, "output": out, "cacheRead": c.CacheTokens, "cacheWrite": 0,
				"totalTokens": in + out + c.CacheTokens,
				"cost":        map[string]any{"input": cost / 2, "output": cost / 2, "cacheRead": 0, "cacheWrite": 0, "total": cost}}
		}
		m := map[string]any{"role": "assistant", "content": []any{}, "api": "demo", "provider": "demo",
			"model": "demo-model", "usage": u, "stopReason": stop, "timestamp": time.Now().UnixMilli()}
		return m
	}
	call := func(stop string) bool {
		w.emit(map[string]any{"type": "message_start", "message": assistant("", false)})
		if ctx.Err() != nil {
			stop = "aborted"
		}
		w.emit(map[string]any{"type": "message_end", "message": assistant(stop, true)})
		return ctx.Err() == nil
	}
	w.emit(map[string]any{"type": "agent_start"})
	slice := time.Duration(c.CPUMS) * time.Millisecond / time.Duration(turns)
	for i := 0; i < turns; i++ {
		w.emit(map[string]any{"type": "turn_start"})
		if !call("toolUse") {
			break
		}
		id := fmt.Sprintf("call_%d", i+1)
		w.emit(map[string]any{"type": "tool_execution_start", "toolCallId": id, "toolName": tool,
			"args": map[string]any{"command": fmt.Sprintf("burn %s", slice)}})
		burnCPU(ctx, slice)
		w.emit(map[string]any{"type": "tool_execution_end", "toolCallId": id, "toolName": tool,
			"result": map[string]any{"content": []any{map[string]any{"type": "text", "text": "done"}}}, "isError": c.ToolError})
		w.emit(map[string]any{"type": "message_start", "message": map[string]any{"role": "toolResult", "toolCallId": id, "toolName": tool}})
		w.emit(map[string]any{"type": "message_end", "message": map[string]any{"role": "toolResult", "toolCallId": id, "toolName": tool}})
		w.emit(map[string]any{"type": "turn_end"})
		if ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() == nil {
		w.emit(map[string]any{"type": "turn_start"})
		call("stop")
		w.emit(map[string]any{"type": "turn_end"})
	}
	w.emit(map[string]any{"type": "agent_end", "aborted": ctx.Err() != nil})
}
