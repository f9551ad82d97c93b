package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// authenticate lets a request through to h only when it carries the token.
func (s *Server) authenticate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="workerscope", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong token: use Authorization: Bearer <token>, or HTTP Basic auth with the token as the password")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authorized reports whether r carries the token as a Bearer token or as
// the password of HTTP Basic auth.
func (s *Server) authorized(r *http.Request) bool {
	if tok, ok := bearerToken(r); ok {
		return s.tokenMatches(tok)
	}
	if _, pass, ok := r.BasicAuth(); ok {
		return s.tokenMatches(pass)
	}
	return false
}

// tokenMatches compares SHA-256 digests in constant time, so neither the
// token's content nor its length leaks through timing.
func (s *Server) tokenMatches(tok string) bool {
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

// bearerToken extracts the token of an "Authorization: Bearer <token>"
// header (the scheme is case-insensitive).
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
