// Package wire is the supervisor's side of the JSON-lines protocol: it
// splits a worker's stdout into bounded lines (LineReader), keeps a
// stderr tail (TailBuffer), and checks a command before it is sent
// (ParseCommand refuses one another parser could read differently).
//
// It imports only the standard library and knows nothing of workers.
package wire
