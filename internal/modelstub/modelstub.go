// Package modelstub is a scripted OpenAI-compatible chat-completions
// server for tests: the real `pi --mode rpc` runs offline against it
// (provider api "openai-completions" in a models.json under
// PI_CODING_AGENT_DIR), and each model call pi makes gets the next
// scripted reply, streamed as server-sent chunks with the usage numbers
// the script says. It listens on 127.0.0.1 only.
//
// It imports only the standard library. It is imported by _test files only.
package modelstub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ToolCall is a tool call the scripted model asks for.
type ToolCall struct {
	ID, Name string
	// Arguments is the JSON object of the tool's arguments, e.g.
	// {"command": "ls"} for pi's bash tool.
	Arguments map[string]any
}

// Usage is what a reply says it used, as OpenAI reports it: pi takes
// input = Prompt − Cached, cacheRead = Cached, output = Completion.
type Usage struct {
	Prompt, Completion, Cached int
}

// Reply is one scripted model response.
type Reply struct {
	Text      string
	ToolCalls []ToolCall
	Usage     Usage
	// Delay is waited before the first chunk (the model "thinking").
	Delay time.Duration
}

// Price is a model's price in US dollars per million tokens, as pi's
// models.json says it; pi computes each call's cost from it.
type Price struct {
	Input, Output, CacheRead, CacheWrite float64
}

// Cost is what pi computes for usage u at price p (pi-ai's calculateCost).
func (p Price) Cost(u Usage) float64 {
	return p.Input/1e6*float64(u.Prompt-u.Cached) + p.Output/1e6*float64(u.Completion) + p.CacheRead/1e6*float64(u.Cached)
}

// Server serves the script. Create it with Start or StartFunc.
type Server struct {
	URL string // the base URL pi's models.json names (…/v1)

	srv   *httptest.Server
	mu    sync.Mutex
	reply func(Request) Reply
	calls int
}

// Request is what a script function sees of one chat completion request.
type Request struct {
	// N is the request's number on this server, from 0.
	N int
	// LastUser is the text of the conversation's last user message (the
	// prompt), ToolResults how many tool results the conversation holds.
	LastUser    string
	ToolResults int
}

// Start serves script on 127.0.0.1 until Close: the i-th chat completion
// request gets script[i]; requests past the end get the last reply.
func Start(script []Reply) *Server {
	return StartFunc(func(r Request) Reply { return script[min(r.N, len(script)-1)] })
}

// StartFunc serves the replies f gives on 127.0.0.1 until Close (several
// sessions can share one server by their prompts).
func StartFunc(f func(Request) Reply) *Server {
	s := &Server{reply: f}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.complete)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL + "/v1"
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Calls is how many chat completions were requested.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string `json:"model"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	s.mu.Lock()
	i := s.calls
	s.calls++
	s.mu.Unlock()
	in := Request{N: i}
	for _, m := range req.Messages {
		switch m.Role {
		case "tool":
			in.ToolResults++
		case "user":
			in.LastUser = text(m.Content)
		}
	}
	reply := s.reply(in)

	select {
	case <-time.After(reply.Delay):
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	id := fmt.Sprintf("chatcmpl-%d", i+1)
	send := func(v map[string]any) {
		v["id"], v["object"], v["created"], v["model"] = id, "chat.completion.chunk", time.Now().Unix(), req.Model
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	choice := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	send(choice(map[string]any{"role": "assistant", "content": ""}, nil))
	if reply.Text != "" {
		send(choice(map[string]any{"content": reply.Text}, nil))
	}
	for n, tc := range reply.ToolCalls {
		args, _ := json.Marshal(tc.Arguments)
		send(choice(map[string]any{"tool_calls": []any{map[string]any{"index": n, "id": tc.ID, "type": "function",
			"function": map[string]any{"name": tc.Name, "arguments": string(args)}}}}, nil))
	}
	finish := "stop"
	if len(reply.ToolCalls) > 0 {
		finish = "tool_calls"
	}
	send(choice(map[string]any{}, finish))
	u := reply.Usage
	send(map[string]any{"choices": []any{}, "usage": map[string]any{
		"prompt_tokens": u.Prompt, "completion_tokens": u.Completion, "total_tokens": u.Prompt + u.Completion,
		"prompt_tokens_details": map[string]any{"cached_tokens": u.Cached}}})
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// PiAgentDir writes a models.json into dir (pi's PI_CODING_AGENT_DIR) that
// names provider with one model, modelID, served at baseURL with price,
// and returns the environment that points pi at it, offline. Start pi
// with --provider provider --model modelID.
func PiAgentDir(dir, baseURL, provider, modelID string, price Price) ([]string, error) {
	cfg := map[string]any{"providers": map[string]any{provider: map[string]any{
		"baseUrl": baseURL, "api": "openai-completions", "apiKey": "scripted-key",
		"compat": map[string]any{"supportsDeveloperRole": false, "supportsReasoningEffort": false},
		"models": []any{map[string]any{"id": modelID, "name": modelID, "reasoning": false, "input": []string{"text"},
			"contextWindow": 128000, "maxTokens": 4096,
			"cost": map[string]any{"input": price.Input, "output": price.Output, "cacheRead": price.CacheRead, "cacheWrite": price.CacheWrite}}},
	}}}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "models.json"), b, 0o644); err != nil {
		return nil, fmt.Errorf("modelstub: %w", err)
	}
	return []string{"PI_CODING_AGENT_DIR=" + dir, "PI_OFFLINE=1", "PI_SKIP_VERSION_CHECK=1", "PI_TELEMETRY=0"}, nil
}

// text is a message content's text: a string, or the text parts of an
// array of parts.
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &parts)
	for _, p := range parts {
		s += p.Text
	}
	return s
}
