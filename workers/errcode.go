package workers

import (
	"context"
	"errors"
)

// Error codes: short, stable names for the errors Send returns, shared by
// the HTTP API's "code" field and the error.type attribute of RPC metrics.
const (
	CodeWorkerError = "worker_error" // the worker answered success:false (not an error of Send)
	CodeBadKey      = "bad_key"
	CodeBadCommand  = "bad_command"
	CodeBackoff     = "backoff"
	CodeWorkerExit  = "worker_exit"
	CodeTimeout     = "timeout"
	CodeCanceled    = "canceled"
	CodePoolFull    = "pool_full"
	CodeClosed      = "closed"
	CodeSpawnFailed = "spawn_failed"
	CodeWriteFailed = "write_failed"
	CodeNotFound    = "not_found"
	// CodeBudgetExceeded: the session is past its token or spend budget
	// (ErrBudgetExceeded), or its run was aborted for it.
	CodeBudgetExceeded = "budget_exceeded"
	CodeOther          = "_OTHER" // semconv's value for an error type it cannot name
)

// ErrorCodes lists every code ErrorCode returns, and CodeWorkerError.
var ErrorCodes = []string{CodeWorkerError, CodeBadKey, CodeBadCommand, CodeBackoff, CodeWorkerExit, CodeTimeout,
	CodeCanceled, CodePoolFull, CodeClosed, CodeSpawnFailed, CodeWriteFailed, CodeNotFound, CodeBudgetExceeded, CodeOther}

// ErrorCode names err for the caller of a command sent under ctx (nil ctx:
// none): one of the Code* constants, or "" for a nil err. Send reports a
// write cut short by ctx with ctx's error (a timeout); a write error under
// an expired ctx is still named a timeout, for errors built elsewhere.
func ErrorCode(ctx context.Context, err error) string {
	var backoff *BackoffError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrBadKey):
		return CodeBadKey
	case errors.Is(err, ErrBadCommand):
		return CodeBadCommand
	case errors.As(err, &backoff):
		return CodeBackoff
	case errors.Is(err, ErrWorkerExit):
		// Before the context checks: a crash is the better explanation
		// when both happen.
		return CodeWorkerExit
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrWriteFailed) && ctx != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return CodeTimeout
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case errors.Is(err, ErrPoolFull):
		return CodePoolFull
	case errors.Is(err, ErrClosed):
		return CodeClosed
	case errors.Is(err, ErrSpawn):
		return CodeSpawnFailed
	case errors.Is(err, ErrWriteFailed):
		return CodeWriteFailed
	case errors.Is(err, ErrNotFound):
		return CodeNotFound
	case errors.Is(err, ErrBudgetExceeded):
		return CodeBudgetExceeded
	}
	return CodeOther
}
