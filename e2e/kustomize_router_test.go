//go:build linux

package e2e

import (
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/workerscope/workerscope/deploy/kubernetes/render"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// TestKustomizeRouterThroughNginx renders the kustomizations of
// deploy/kubernetes (the base, 3 replicas, and overlays/scale-5) with
// kustomize's own Go module, as `kubectl apply -k` would, offline; decodes
// every object strictly into the k8s.io/api types; checks that the session
// router's upstreams are the StatefulSet's pods (<sts>-<i>.<serviceName>.
// <ns>.svc.cluster.local:<port>, one per replica); then serves through the
// router's nginx config as rendered — only the upstream addresses and the
// listen port rewritten to loopback — with Debian's nginx in front of that
// many real supervisors: 60 sessions keep their worker, stopping one
// supervisor moves only its sessions (checkRoutingThroughNginx).
func TestKustomizeRouterThroughNginx(t *testing.T) {
	for _, target := range []string{render.KubeDir, render.OverlaysDir + "/scale-5"} {
		t.Run(path.Base(target), func(t *testing.T) {
			stream, err := render.Kustomize(repoRoot(t), target)
			if err != nil {
				t.Fatal(err)
			}
			conf, fleet := routerOf(t, stream)
			want := fleet.Upstreams()
			if got := serversOf(conf, "workerscope_sessions"); !slices.Equal(got, want) {
				t.Fatalf("%s: the router's session upstreams are %v, the StatefulSet's pods %v", target, got, want)
			}
			if got := serversOf(conf, "workerscope_any"); !slices.Equal(got, want) {
				t.Fatalf("%s: the router's /healthz upstreams are %v, the StatefulSet's pods %v", target, got, want)
			}
			t.Logf("%s: StatefulSet %s, serviceName %s, namespace %s, %d replicas; %d upstreams",
				target, fleet.StatefulSet, fleet.Service, fleet.Namespace, fleet.Replicas, len(want))

			apps, loopback := startRoutingInstances(t, fleet.Replicas)
			repl := []string{"listen " + render.RouterListen + ";", ""} // filled in with the port below
			for i, u := range want {
				repl = append(repl, u, loopback[i])
			}
			lb := startNginxSite(t, func(listen string) string {
				repl[1] = "listen " + listen + ";"
				site := strings.NewReplacer(repl...).Replace(conf)
				if strings.Contains(render.StripComments(site), ".svc.cluster.local") || !strings.Contains(site, repl[1]) {
					t.Fatalf("%s: a pod DNS name or the listen port was not rewritten:\n%s", target, site)
				}
				return site
			})
			r := checkRoutingThroughNginx(t, apps, lb)
			if len(r.perInstance) != fleet.Replicas {
				t.Fatalf("%d instances checked, %d replicas", len(r.perInstance), fleet.Replicas)
			}
		})
	}
}

// routerOf returns the nginx config that the Deployment workerscope-router
// mounts in /etc/nginx/conf.d/, and the StatefulSet's fleet; every object
// of the stream decodes strictly into its k8s.io/api type.
func routerOf(t *testing.T, stream []byte) (string, render.Fleet) {
	t.Helper()
	fleet, err := render.FleetOf(stream)
	if err != nil {
		t.Fatal(err)
	}
	var router *appsv1.Deployment
	cms := map[string]*corev1.ConfigMap{}
	kinds := map[string]int{}
	for _, d := range render.Documents(stream) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(d), &meta); err != nil {
			t.Fatal(err)
		}
		var into any
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 Namespace":
			into = &corev1.Namespace{}
		case "v1 Service":
			into = &corev1.Service{}
		case "v1 Secret":
			into = &corev1.Secret{}
		case "apps/v1 StatefulSet":
			into = &appsv1.StatefulSet{}
		case "apps/v1 Deployment":
			into = &appsv1.Deployment{}
		case "v1 ConfigMap":
			into = &corev1.ConfigMap{}
		case "policy/v1 PodDisruptionBudget":
			into = &policyv1.PodDisruptionBudget{}
		case "networking.k8s.io/v1 NetworkPolicy":
			into = &networkingv1.NetworkPolicy{}
		default:
			t.Fatalf("unexpected %s %s in the kustomization", meta.APIVersion, meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(d), into); err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
		kinds[meta.Kind]++
		switch x := into.(type) {
		case *appsv1.Deployment:
			if x.Name == "workerscope-router" {
				router = x
			}
		case *corev1.ConfigMap:
			cms[x.Name] = x
		}
	}
	t.Logf("rendered objects: %v", kinds)
	if router == nil {
		t.Fatal("no Deployment workerscope-router")
	}
	pod := router.Spec.Template.Spec
	for _, c := range pod.Containers {
		for _, m := range c.VolumeMounts {
			if m.MountPath != "/etc/nginx/conf.d" {
				continue
			}
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.ConfigMap != nil && cms[v.ConfigMap.Name] != nil {
					if conf, ok := cms[v.ConfigMap.Name].Data["workerscope.conf"]; ok {
						return conf, fleet
					}
				}
			}
		}
	}
	t.Fatal("the router mounts no ConfigMap with workerscope.conf in /etc/nginx/conf.d")
	return "", fleet
}

// serversOf lists the server addresses of an upstream block.
func serversOf(conf, upstream string) []string {
	block := regexp.MustCompile(`(?ms)^upstream ` + regexp.QuoteMeta(upstream) + ` \{(.*?)\}`).FindStringSubmatch(conf)
	if block == nil {
		return nil
	}
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server ([^ ;]+)`).FindAllStringSubmatch(block[1], -1) {
		out = append(out, m[1])
	}
	return out
}
