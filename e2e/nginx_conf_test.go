//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNginxConfInDebianConfD follows deploy/nginx/workerscope.conf's
// install instruction on Debian's stock nginx.conf: the file, placeholders
// filled in, goes into conf.d/, and `nginx -t` must pass without a
// warning. The stock file (testdata/debian12-nginx/nginx.conf, verbatim from
// nginx-common 1.22.1-9+deb12u11) sets `gzip on;` in http{}, where a
// second gzip is "duplicate". Nothing of the system's /etc/nginx is read or
// written: the copy lives in a temp prefix with its paths rewritten.
func TestNginxConfInDebianConfD(t *testing.T) {
	bin := requiredTool(t, "WORKERSCOPE_NGINX", "nginx", "apt-get install nginx", "/usr/sbin/nginx")
	stock, err := os.ReadFile(filepath.Join("testdata", "debian12-nginx", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"conf.d", "sites-enabled", "modules-enabled", "log", "lib"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The stock file's absolute paths, moved into the prefix. Each must
	// be found, so a different stock file is noticed rather than half
	// rewritten.
	conf := string(stock)
	for _, r := range []struct{ old, new string }{
		{"/etc/nginx/", dir + "/"},
		{"/var/log/nginx/", dir + "/log/"},
		{"/run/nginx.pid", dir + "/nginx.pid"},
		// The compiled-in temp paths are under /var/lib/nginx, which
		// `nginx -t` would create (or, unprivileged, fail to): set at the
		// end of http{}, after the includes, so a duplicate in the
		// shipped file is reported there first.
		{"\tinclude " + dir + "/sites-enabled/*;\n", "\tinclude " + dir + "/sites-enabled/*;\n" +
			"\tclient_body_temp_path " + dir + "/lib/body;\n\tproxy_temp_path " + dir + "/lib/proxy;\n" +
			"\tfastcgi_temp_path " + dir + "/lib/fastcgi;\n\tuwsgi_temp_path " + dir + "/lib/uwsgi;\n\tscgi_temp_path " + dir + "/lib/scgi;\n"},
	} {
		if !strings.Contains(conf, r.old) {
			t.Fatalf("the stock nginx.conf has no %q", r.old)
		}
		conf = strings.ReplaceAll(conf, r.old, r.new)
	}
	files := map[string]string{
		"nginx.conf": conf,
		// Its content does not matter here; the stock file includes it.
		"mime.types": "types {\n    text/html html;\n    application/json json;\n}\n",
		// sites-enabled/ stays empty: Debian's default site listens on
		// port 80, which `nginx -t` would bind.
		"conf.d/workerscope.conf": renderNginxConf(t, freePort(t), []string{"10.0.0.11:7070", "10.0.0.12:7070", "10.0.0.13:7070"}),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-t", "-p", dir, "-e", filepath.Join(dir, "log", "error.log"), "-c", filepath.Join(dir, "nginx.conf"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t with the shipped file in the stock conf.d/: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		// Unprivileged, nginx warns about the stock file's `user www-data;`.
		if strings.Contains(line, "[warn]") && !strings.Contains(line, `the "user" directive makes sense only`) ||
			strings.Contains(line, "[emerg]") || strings.Contains(line, "[alert]") {
			t.Errorf("nginx -t: %s", line)
		}
	}
	if !strings.Contains(string(out), "test is successful") {
		t.Errorf("nginx -t did not report success:\n%s", out)
	}
}
