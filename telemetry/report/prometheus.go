package report

import (
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// Negotiate serves /metrics: Prometheus exposition when the client
// prefers text/plain (version 0.0.4) or OpenMetrics over HTML, as a
// Prometheus scraper does; the HTML page otherwise (browsers, curl's */*).
func Negotiate(page, prom http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept")
		if prom != nil && wantsPrometheus(r.Header.Values("Accept")) {
			prom.ServeHTTP(w, r)
			return
		}
		page.ServeHTTP(w, r)
	})
}

// wantsPrometheus reports whether the best-ranked of text/html and the
// Prometheus formats (text/plain, application/openmetrics-text, and the
// protobuf format a scraper may ask for alone) in Accept is a Prometheus
// one; promhttp then picks the encoding it can serve.
func wantsPrometheus(accept []string) bool {
	best := map[string]float64{}
	for _, header := range accept {
		for _, part := range strings.Split(header, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if v, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					q = f
				}
			}
			if q > best[mt] {
				best[mt] = q
			}
		}
	}
	html := best["text/html"]
	prom := max(best["text/plain"], best["application/openmetrics-text"], best["application/vnd.google.protobuf"])
	return prom > 0 && prom > html
}
