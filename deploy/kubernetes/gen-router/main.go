// Command gen-router renders the session router's nginx config from
// deploy/nginx/workerscope.conf.tmpl: deploy/nginx/workerscope.conf (with
// @…@ placeholders, for conf.d/) and router/workerscope.conf of
// deploy/kubernetes and of each overlay under deploy/kubernetes/overlays/,
// with the pod DNS names of the StatefulSet that kustomization renders (its
// replica count, serviceName and namespace). Run it from the repository
// root (`make k8s-router`) after changing the template or a replica count,
// and commit the result; `go test ./deploy/kubernetes` fails until then.
package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/workerscope/workerscope/deploy/kubernetes/render"
)

func main() {
	files, err := render.Generated(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen-router:", err)
		os.Exit(1)
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		old, _ := os.ReadFile(p)
		if string(old) == files[p] {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "gen-router:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(p, []byte(files[p]), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen-router:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", p)
	}
}
