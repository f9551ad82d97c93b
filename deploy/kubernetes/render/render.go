// Package render renders the kustomizations of deploy/kubernetes with
// kustomize's own Go module (offline, in memory) and the session router's
// nginx config from deploy/nginx/workerscope.conf.tmpl. The generator
// (deploy/kubernetes/gen-router), the manifest tests and the end-to-end
// routing test share it, so what is checked in, what is checked and what
// nginx serves come from the same code.
package render

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Paths inside the repository.
const (
	KubeDir      = "deploy/kubernetes"          // kustomization: resources [base]
	BaseDir      = "deploy/kubernetes/base"     // the manifests
	OverlaysDir  = "deploy/kubernetes/overlays" // one directory per overlay
	Template     = "deploy/nginx/workerscope.conf.tmpl"
	PlainConf    = "deploy/nginx/workerscope.conf"
	RouterConf   = "router/workerscope.conf" // in a kustomization's directory
	RouterListen = "8080"                    // the router container's port (router.yaml)
	// ClusterDomain is the cluster's DNS domain in the pods' names.
	ClusterDomain = "cluster.local"
)

// Targets are the kustomization directories that have a router config of
// their own: the base and each overlay, relative to the repository root.
// (KubeDir renders the base.)
func Targets(root string) ([]string, error) {
	targets := []string{BaseDir}
	entries, err := os.ReadDir(filepath.Join(root, OverlaysDir))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() {
			targets = append(targets, path.Join(OverlaysDir, e.Name()))
		}
	}
	return targets, nil
}

// Kustomize renders the kustomization in target (a directory relative to
// root, under deploy/kubernetes) as `kubectl apply -k` would, and returns
// the YAML stream. It works on an in-memory copy of deploy/kubernetes, in
// which each secrets/*.env missing on disk is its .env.example, and a
// missing router config (of the base or an overlay) is empty (so that the generator can render a new
// overlay before its config exists).
func Kustomize(root, target string) ([]byte, error) {
	mem := filesys.MakeFsInMemory()
	base := filepath.Join(root, KubeDir)
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		dst := "/" + filepath.ToSlash(rel)
		if err := mem.WriteFile(dst, b); err != nil {
			return err
		}
		if env, ok := strings.CutSuffix(dst, ".env.example"); ok && !mem.Exists(env+".env") {
			return mem.WriteFile(env+".env", b)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	targets, err := Targets(root)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		if conf := "/" + path.Join(t, RouterConf); !mem.Exists(conf) {
			if err := mem.WriteFile(conf, nil); err != nil {
				return nil, err
			}
		}
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, "/"+target)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", target, err)
	}
	return m.AsYaml()
}

// Documents splits a YAML stream into its documents (comment-only ones
// dropped).
func Documents(stream []byte) []string {
	var docs []string
	for _, d := range docSep.Split(string(stream), -1) {
		if strings.TrimSpace(StripComments(d)) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// StripComments drops the comment lines (#) of a YAML document or an
// nginx config.
func StripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// Fleet is what the router needs to know of the workerscope StatefulSet.
type Fleet struct {
	Namespace   string
	StatefulSet string
	Service     string // the StatefulSet's serviceName, a headless Service
	Port        int32  // the Service's port named http
	Replicas    int
}

// FleetOf finds the StatefulSet workerscope and its headless Service in a
// rendered stream, decoding both strictly into the k8s.io/api types.
func FleetOf(stream []byte) (Fleet, error) {
	var ss *appsv1.StatefulSet
	svcs := map[string]*corev1.Service{}
	for _, d := range Documents(stream) {
		var meta struct {
			APIVersion, Kind string
		}
		if err := yaml.Unmarshal([]byte(d), &meta); err != nil {
			return Fleet{}, err
		}
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 StatefulSet":
			var x appsv1.StatefulSet
			if err := yaml.UnmarshalStrict([]byte(d), &x); err != nil {
				return Fleet{}, err
			}
			if x.Name == "workerscope" {
				ss = &x
			}
		case "v1 Service":
			var x corev1.Service
			if err := yaml.UnmarshalStrict([]byte(d), &x); err != nil {
				return Fleet{}, err
			}
			svcs[x.Name] = &x
		}
	}
	if ss == nil {
		return Fleet{}, fmt.Errorf("no StatefulSet workerscope")
	}
	f := Fleet{Namespace: ss.Namespace, StatefulSet: ss.Name, Service: ss.Spec.ServiceName, Replicas: 1}
	if ss.Spec.Replicas != nil {
		f.Replicas = int(*ss.Spec.Replicas)
	}
	svc := svcs[f.Service]
	if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		return Fleet{}, fmt.Errorf("StatefulSet %s: serviceName %q is not a headless Service of the kustomization", ss.Name, f.Service)
	}
	if svc.Namespace != f.Namespace {
		return Fleet{}, fmt.Errorf("Service %s in namespace %q, StatefulSet in %q", svc.Name, svc.Namespace, f.Namespace)
	}
	if f.Namespace == "" {
		return Fleet{}, fmt.Errorf("StatefulSet %s has no namespace: the pods' DNS names need one (kustomization `namespace:`)", ss.Name)
	}
	i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "http" })
	if i < 0 {
		return Fleet{}, fmt.Errorf("Service %s has no port named http", svc.Name)
	}
	f.Port = svc.Spec.Ports[i].Port
	return f, nil
}

// Upstreams are the pods' DNS names with the port, in ordinal order:
// <statefulset>-<i>.<serviceName>.<namespace>.svc.<domain>:<port>.
func (f Fleet) Upstreams() []string {
	u := make([]string, f.Replicas)
	for i := range u {
		u[i] = fmt.Sprintf("%s-%d.%s.%s.svc.%s:%d", f.StatefulSet, i, f.Service, f.Namespace, ClusterDomain, f.Port)
	}
	return u
}

// Kube says, in the rendered file's header, where a Kubernetes config
// comes from.
type Kube struct {
	Dir string
	Fleet
}

// NginxConf renders the template with a listen address and the upstreams
// (host:port, in instance order); kube is nil for the plain conf.d file.
func NginxConf(tmpl []byte, listen string, upstreams []string, kube *Kube) (string, error) {
	if len(upstreams) == 0 {
		return "", fmt.Errorf("no upstreams")
	}
	t, err := template.New(Template).Option("missingkey=error").Parse(string(tmpl))
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	err = t.Execute(&b, struct {
		Listen    string
		Instances []string
		Last      int
		Kube      *Kube
	}{listen, upstreams, len(upstreams) - 1, kube})
	return b.String(), err
}

// Generated is every file rendered from the template, by path relative to
// the repository root: the plain conf.d file with @…@ placeholders for
// three supervisors, and each kustomization's router config.
func Generated(root string) (map[string]string, error) {
	tmpl, err := os.ReadFile(filepath.Join(root, Template))
	if err != nil {
		return nil, err
	}
	plain, err := NginxConf(tmpl, "@LISTEN@", []string{"@INSTANCE0@", "@INSTANCE1@", "@INSTANCE2@"}, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]string{PlainConf: plain}
	targets, err := Targets(root)
	if err != nil {
		return nil, err
	}
	for _, target := range targets {
		stream, err := Kustomize(root, target)
		if err != nil {
			return nil, err
		}
		f, err := FleetOf(stream)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", target, err)
		}
		conf, err := NginxConf(tmpl, RouterListen, f.Upstreams(), &Kube{Dir: target, Fleet: f})
		if err != nil {
			return nil, err
		}
		out[path.Join(target, RouterConf)] = conf
	}
	return out, nil
}
