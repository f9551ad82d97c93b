package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// credential is one secret the supervisor takes from systemd's
// credentials directory ($CREDENTIALS_DIRECTORY, filled by LoadCredential=
// or SetCredentialEncrypted= in the unit): the file name and the variable
// it stands for.
type credential struct{ file, env string }

// tokenCredential is the API token's file in $CREDENTIALS_DIRECTORY.
const tokenCredential = "token"

// credentials lists them. A variable set in the environment wins over its
// credential file. The API token's credential, tokenCredential, comes last
// in the token's own order (see parseConfig).
func credentials() []credential {
	return []credential{
		{"otlp-headers", "OTEL_EXPORTER_OTLP_HEADERS"},
		{"pyroscope-password", "PYROSCOPE_BASIC_AUTH_PASSWORD"},
	}
}

// secretEnv names the variables that hold secrets; the supervisor removes
// them from its own environment once the settings are read (see
// scrubSecrets).
func secretEnv() []string {
	return []string{
		"WORKERSCOPE_TOKEN",
		"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
		"PYROSCOPE_BASIC_AUTH_PASSWORD",
	}
}

// withCredentials returns getenv backed by the files of dir (systemd's
// $CREDENTIALS_DIRECTORY; "" for none): a variable of credentials() that
// is unset or empty reads as its file's content, trailing newline removed.
// A credential file that exists but cannot be read is an error.
func withCredentials(getenv func(string) string, dir string) (func(string) string, []string, error) {
	if dir == "" {
		return getenv, nil, nil
	}
	vals := map[string]string{}
	var used []string
	var errs []error
	for _, c := range credentials() {
		b, err := os.ReadFile(filepath.Join(dir, c.file))
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("credential %s ($CREDENTIALS_DIRECTORY): %w", c.file, err))
			continue
		}
		if v := strings.TrimRight(string(b), "\r\n"); v != "" && getenv(c.env) == "" {
			vals[c.env] = v
			used = append(used, c.file)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	if len(vals) == 0 {
		return getenv, nil, nil
	}
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return vals[k]
	}, used, nil
}

// exporterEnv copies credentials the OTLP exporters read from the process
// environment themselves (OTEL_EXPORTER_OTLP_HEADERS) into it, just
// before they are built; scrubSecrets removes them again.
func exporterEnv(getenv func(string) string) error {
	const k = "OTEL_EXPORTER_OTLP_HEADERS"
	if v := getenv(k); v != "" && os.Getenv(k) == "" {
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("%s from its credential: %w", k, err)
		}
	}
	return nil
}

// scrubSecrets removes the secret variables from the supervisor's own
// environment once everything that needs them has read them. This keeps
// them from anything the process starts or reads later (a child spawned
// without an explicit environment, a library reading the environment, a
// debug endpoint); it does not change /proc/PID/environ, which shows the
// environment the process was started with; closeToWorkers is what
// closes that. It returns the names it removed.
func scrubSecrets() []string {
	var removed []string
	for _, k := range secretEnv() {
		if _, ok := os.LookupEnv(k); ok {
			_ = os.Unsetenv(k)
			removed = append(removed, k)
		}
	}
	return removed
}
