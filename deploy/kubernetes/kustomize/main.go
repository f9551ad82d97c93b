// Command kustomize prints the YAML stream that `kubectl apply -k` would
// apply for a kustomization under deploy/kubernetes (the base by default),
// rendered offline with kustomize's Go module by the same code the tests use
// (deploy/kubernetes/render). `make lint-deploy` pipes it to kube-score:
//
//	go run ./deploy/kubernetes/kustomize [deploy/kubernetes/overlays/scale-5]
//
// Run it from the repository root.
package main

import (
	"fmt"
	"os"

	"github.com/workerscope/workerscope/deploy/kubernetes/render"
)

func main() {
	target := render.KubeDir
	switch len(os.Args) {
	case 1:
	case 2:
		target = os.Args[1]
	default:
		fmt.Fprintln(os.Stderr, "usage: kustomize [deploy/kubernetes/...]")
		os.Exit(2)
	}
	out, err := render.Kustomize(".", target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kustomize:", err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
