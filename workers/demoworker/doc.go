// Package demoworker is a worker that speaks the same JSON-lines RPC
// protocol as `pi --mode rpc`, with synthetic load instead of an LLM. It is
// workerscope's default worker (`workerscope demo-worker`) and the
// workhorse of its tests.
//
// Commands (one JSON object per line; responses echo "id"):
//
//	prompt     {"message", "cpu_ms", "mem_mib", "events", "child_ms", "child_cpu_ms",
//	            "child_setsid", "child_orphan"}
//	           answers at once, then streams agent_start, message_update×events and
//	           agent_end while it burns cpu_ms of CPU, holds mem_mib MiB (replacing
//	           what it held; negative frees it), and starts a child that burns child_cpu_ms and lives
//	           child_ms (setsid: in a new session; orphan: the child forks the
//	           sleeper and exits, so the sleeper is re-parented).
//	           With "agent_events": true it streams what pi streams instead: per
//	           turn ("turns", default 1) an assistant message (message_start,
//	           message_end with usage: "input_tokens" (1000), "output_tokens"
//	           (100), "cache_tokens" (0), "cost_usd" (0.001) per model call,
//	           provider "demo", model "demo-model") asking for "tool" (bash),
//	           the tool's tool_execution_start … _end ("tool_error": isError)
//	           around cpu_ms/turns of CPU, its toolResult message, then a final
//	           assistant message and agent_end (abort ends it early).
//	get_state  {"pid", "held_mib", "streaming", "prompts", "children"}
//	abort      stops the running prompt (agent_end follows)
//	sleep      {"ms"}: answers after ms
//	flood      {"lines", "bytes", "kind": "invalid"|"oversize"}: prints junk first
//	crash      {"code", "message"}: message to stderr, then exit code
//	work       {"cpu_ms", "child_cpu_ms", "child_ms", "mem_mib", "events"}: burns
//	           cpu_ms (streaming message_update×events meanwhile) while a child
//	           burns child_cpu_ms and lives child_ms, and answers only after
//	           the child has exited and been reaped {"cpu_ms", "child_cpu_ms"}
//	stderr     {"lines", "message", "ms"}: prints lines lines of message to
//	           stderr (numbered when more than one), then answers {"lines"}
//	           after ms
//	ignore_sigterm: from now on SIGTERM is ignored
//	stall      {"ms"}: answers, then stops reading stdin for ms (0: until it
//	           is stopped), so the supervisor's writes fill the pipe and block
//	hold       {"mib", "ms"}: holds mib MiB of touched pages (replacing what it
//	           held), then answers after ms more {"held_mib"}
//	fork       {"count", "ms"}: starts count children (`sleep`, one thread
//	           each) that live ms, one after another, and answers
//	           {"started", "failed", "error"} (the first fork error)
//	exec       {"argv", "ms"}: runs argv (what a model-chosen shell command
//	           would do: the hostile-worker tests' fault injection) and answers
//	           {"code", "stdout", "stderr"} (4 KiB each; "error" when it could
//	           not start)
//	dial       {"addr", "ms", "mptcp", "listen"}: opens a TCP (or Multipath
//	           TCP) connection to addr, or with listen binds a listener on it,
//	           and answers {"listening"} or
//	           {"connected"} (and "error")
//
// Environment: WORKERSCOPE_DEMO_CRASH_AT_START=msg prints msg to stderr and
// exits 3 before reading anything; WORKERSCOPE_DEMO_IGNORE_SIGTERM=1 ignores
// SIGTERM from the start.
//
// It imports only the standard library: it is the worker, not the supervisor.
package demoworker
