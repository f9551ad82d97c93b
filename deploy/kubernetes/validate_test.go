package kubernetes_test

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/workerscope/workerscope/deploy/kubernetes/render"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// objects are the objects a kustomization of this directory renders (with
// kustomize's own Go module, as `kubectl apply -k` would), decoded
// strictly into the k8s.io/api types: an unknown or misspelt field, a
// wrong type or a duplicate key fails (no cluster runs here, so this is
// the check).
type objects struct {
	namespaces   map[string]*corev1.Namespace
	services     map[string]*corev1.Service
	statefulSets map[string]*appsv1.StatefulSet
	deployments  map[string]*appsv1.Deployment
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	pdbs         map[string]*policyv1.PodDisruptionBudget
	netpols      map[string]*networkingv1.NetworkPolicy
}

// root is the repository root, seen from this directory.
const root = "../.."

// targets: every kustomization of this directory.
var targets = []string{render.KubeDir, render.BaseDir, render.OverlaysDir + "/scale-5"}

func load(t *testing.T, target string) *objects {
	t.Helper()
	stream, err := render.Kustomize(root, target)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, target, stream)
}

func decode(t *testing.T, target string, stream []byte) *objects {
	t.Helper()
	o := &objects{
		namespaces: map[string]*corev1.Namespace{},
		services:   map[string]*corev1.Service{}, statefulSets: map[string]*appsv1.StatefulSet{},
		deployments: map[string]*appsv1.Deployment{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		netpols: map[string]*networkingv1.NetworkPolicy{},
	}
	for i, doc := range render.Documents(stream) {
		where := fmt.Sprintf("%s document %d", target, i)
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		strict := func(into any) {
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s (%s): %v", where, meta.Kind, err)
			}
		}
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 Namespace":
			var x corev1.Namespace
			strict(&x)
			o.namespaces[x.Name] = &x
		case "v1 Service":
			var x corev1.Service
			strict(&x)
			o.services[x.Name] = &x
		case "apps/v1 StatefulSet":
			var x appsv1.StatefulSet
			strict(&x)
			o.statefulSets[x.Name] = &x
		case "apps/v1 Deployment":
			var x appsv1.Deployment
			strict(&x)
			o.deployments[x.Name] = &x
		case "v1 ConfigMap":
			var x corev1.ConfigMap
			strict(&x)
			o.configMaps[x.Name] = &x
		case "v1 Secret":
			var x corev1.Secret
			strict(&x)
			o.secrets[x.Name] = &x
		case "policy/v1 PodDisruptionBudget":
			var x policyv1.PodDisruptionBudget
			strict(&x)
			o.pdbs[x.Name] = &x
		case "networking.k8s.io/v1 NetworkPolicy":
			var x networkingv1.NetworkPolicy
			strict(&x)
			o.netpols[x.Name] = &x
		default:
			t.Fatalf("%s: unexpected %s %s (add it to this test)", where, meta.APIVersion, meta.Kind)
		}
	}
	return o
}

func TestManifestsDecodeStrictly(t *testing.T) {
	for _, target := range targets {
		o := load(t, target)
		if len(o.namespaces) != 1 || len(o.statefulSets) != 1 || len(o.deployments) != 2 || len(o.services) != 3 || len(o.configMaps) != 3 || len(o.secrets) != 2 ||
			len(o.pdbs) != 3 || len(o.netpols) != 3 {
			t.Fatalf("%s: %d Namespaces, %d StatefulSets, %d Deployments, %d Services, %d ConfigMaps, %d Secrets, %d PodDisruptionBudgets, %d NetworkPolicies", target,
				len(o.namespaces), len(o.statefulSets), len(o.deployments), len(o.services), len(o.configMaps), len(o.secrets), len(o.pdbs), len(o.netpols))
		}
		for _, m := range []map[string]metav1.Object{objs(o.services), objs(o.statefulSets), objs(o.deployments), objs(o.configMaps), objs(o.secrets), objs(o.pdbs), objs(o.netpols)} {
			for name, x := range m {
				if _, ok := o.namespaces[x.GetNamespace()]; !ok {
					t.Errorf("%s: %s is in namespace %q, not the kustomization's %v", target, name, x.GetNamespace(), slices.Collect(maps.Keys(o.namespaces)))
				}
				if x.GetLabels()["app.kubernetes.io/part-of"] != "workerscope" {
					t.Errorf("%s: %s has no label app.kubernetes.io/part-of=workerscope", target, name)
				}
			}
		}
	}
}

func objs[T metav1.Object](m map[string]T) map[string]metav1.Object {
	out := map[string]metav1.Object{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// deploy/kubernetes (what `kubectl apply -k deploy/kubernetes` applies) is
// the base, object for object.
func TestTopLevelIsTheBase(t *testing.T) {
	top, err := render.Kustomize(root, render.KubeDir)
	if err != nil {
		t.Fatal(err)
	}
	base, err := render.Kustomize(root, render.BaseDir)
	if err != nil {
		t.Fatal(err)
	}
	if string(top) != string(base) {
		t.Fatal("deploy/kubernetes renders differently from deploy/kubernetes/base")
	}
}

// The strict decoder is not vacuous: a misspelt field fails.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	var s appsv1.StatefulSet
	err := yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: StatefulSet\nspec:\n  replica: 3\n"), &s)
	if err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("a misspelt field decoded: %v", err)
	}
}

func TestWorkerscopeStatefulSet(t *testing.T) {
	for _, target := range targets {
		t.Run(path.Base(target), func(t *testing.T) { checkWorkerscope(t, load(t, target)) })
	}
}

func checkWorkerscope(t *testing.T, o *objects) {
	ss := o.statefulSets["workerscope"]
	if ss == nil {
		t.Fatal("no StatefulSet workerscope")
	}
	svc := o.services[ss.Spec.ServiceName]
	if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("serviceName %q is not a headless Service here", ss.Spec.ServiceName)
	}
	checkSelector(t, "StatefulSet workerscope", ss.Spec.Selector.MatchLabels, ss.Spec.Template.Labels)
	checkSelector(t, "Service workerscope", svc.Spec.Selector, ss.Spec.Template.Labels)
	pod := ss.Spec.Template.Spec
	checkPod(t, o, "workerscope", &pod)

	ws := container(t, pod.Containers, "workerscope")
	if env(ws, "WORKERSCOPE_TOKEN") == nil || env(ws, "WORKERSCOPE_TOKEN").ValueFrom == nil || env(ws, "WORKERSCOPE_TOKEN").ValueFrom.SecretKeyRef == nil {
		t.Error("WORKERSCOPE_TOKEN does not come from a Secret")
	}
	for _, c := range []struct {
		name, path string
		p          *corev1.Probe
	}{{"startup", "/readyz", ws.StartupProbe}, {"readiness", "/readyz", ws.ReadinessProbe}, {"liveness", "/healthz", ws.LivenessProbe}} {
		if c.p == nil || c.p.HTTPGet == nil || c.p.HTTPGet.Path != c.path {
			t.Errorf("workerscope %s probe is not an HTTP GET of %s: %+v", c.name, c.path, c.p)
		}
	}
	if ws.Resources.Requests.Memory().IsZero() || ws.Resources.Limits.Memory().IsZero() || ws.Resources.Requests.Cpu().IsZero() {
		t.Error("workerscope has no memory request/limit or CPU request")
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g <= 5 {
		t.Error("terminationGracePeriodSeconds must exceed --stop-grace (5s)")
	}

	agent := container(t, pod.InitContainers, "otel-agent")
	if agent.RestartPolicy == nil || *agent.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("otel-agent is not a native sidecar (restartPolicy: Always)")
	}
	if e := env(ws, "OTEL_EXPORTER_OTLP_ENDPOINT"); e == nil || e.Value != "http://127.0.0.1:4317" {
		t.Error("workerscope does not export to the sidecar agent on loopback")
	}
	if e := env(agent, "OTELCOL_GATEWAY_ENDPOINT"); e == nil || !strings.Contains(e.Value, "otel-gateway:4318") {
		t.Error("the agent does not forward to the otel-gateway Service")
	} else if o.services["otel-gateway"] == nil {
		t.Error("no otel-gateway Service")
	}
}

func TestGatewayDeployment(t *testing.T) {
	o := load(t, render.KubeDir)
	d := o.deployments["otel-gateway"]
	if d == nil {
		t.Fatal("no Deployment otel-gateway")
	}
	checkSelector(t, "Deployment otel-gateway", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	checkSelector(t, "Service otel-gateway", o.services["otel-gateway"].Spec.Selector, d.Spec.Template.Labels)
	pod := d.Spec.Template.Spec
	checkPod(t, o, "otel-gateway", &pod)
	c := container(t, pod.Containers, "otelcol")
	for _, port := range o.services["otel-gateway"].Spec.Ports {
		if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == port.TargetPort.StrVal }) {
			t.Errorf("Service otel-gateway targets port %q the container does not name", port.TargetPort.StrVal)
		}
	}
	if e := env(c, "OTELCOL_GATEWAY_TOKEN"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Error("the gateway token does not come from a Secret")
	}
}

// The ConfigMaps carry exactly the collector configs that
// TestCollectorConfigsValidate (e2e/) validates with the real collector.
func TestConfigMapsMatchDeployConfigs(t *testing.T) {
	o := load(t, render.KubeDir)
	want := map[string]map[string]string{
		"otel-agent":   {"otel-collector.yaml": "otel-collector.yaml", "gateway.yaml": "backends/gateway.yaml"},
		"otel-gateway": {"otel-collector-gateway.yaml": "otel-collector-gateway.yaml", "grafana-cloud.yaml": "gateway/grafana-cloud.yaml", "honeycomb.yaml": "gateway/honeycomb.yaml"},
	}
	for name, keys := range want {
		cm := o.configMaps[name]
		if cm == nil {
			t.Fatalf("no ConfigMap %s", name)
		}
		for key, file := range keys {
			b, err := os.ReadFile(filepath.Join("..", file))
			if err != nil {
				t.Fatal(err)
			}
			if got := cm.Data[key]; got != trimBlankLines(string(b)) {
				t.Errorf("ConfigMap %s key %s differs from deploy/%s: run deploy/kubernetes/gen-configmaps.sh", name, key, file)
			}
		}
	}
}

// trimBlankLines is the file as a YAML block scalar gives it back: lines
// of only spaces become empty.
func trimBlankLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == "" {
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}

func checkSelector(t *testing.T, what string, sel, labels map[string]string) {
	t.Helper()
	if len(sel) == 0 {
		t.Errorf("%s: empty selector", what)
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pod labels %v", what, k, v, labels)
		}
	}
}

// checkPod: every Secret, ConfigMap, volume and named probe port a pod
// refers to exists, and every container is unprivileged with limits.
func checkPod(t *testing.T, o *objects, what string, pod *corev1.PodSpec) {
	t.Helper()
	vols := map[string]bool{}
	for _, v := range pod.Volumes {
		vols[v.Name] = true
		if v.ConfigMap != nil {
			cm := o.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Errorf("%s: volume %s uses ConfigMap %s, not defined here", what, v.Name, v.ConfigMap.Name)
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					t.Errorf("%s: volume %s uses key %s of ConfigMap %s, which has none", what, v.Name, it.Key, cm.Name)
				}
			}
		}
	}
	all := append(slices.Clone(pod.InitContainers), pod.Containers...)
	for _, c := range all {
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				t.Errorf("%s/%s: mounts unknown volume %s", what, c.Name, m.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				ref := e.ValueFrom.SecretKeyRef
				s := o.secrets[ref.Name]
				if s == nil {
					t.Errorf("%s/%s: %s from unknown Secret %s", what, c.Name, e.Name, ref.Name)
				} else if _, ok := s.Data[ref.Key]; !ok {
					t.Errorf("%s/%s: %s from Secret %s key %s, which its secretGenerator's example lacks", what, c.Name, e.Name, ref.Name, ref.Key)
				}
			}
		}
		for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" &&
				!slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.HTTPGet.Port.StrVal }) {
				t.Errorf("%s/%s: probe port %q is not a named port", what, c.Name, p.HTTPGet.Port.StrVal)
			}
		}
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s/%s: not unprivileged with a read-only root", what, c.Name)
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: no memory limit", what, c.Name)
		}
		if c.Resources.Requests.StorageEphemeral().IsZero() || c.Resources.Limits.StorageEphemeral().IsZero() {
			t.Errorf("%s/%s: no ephemeral-storage request and limit", what, c.Name)
		}
		if _, tag, ok := strings.Cut(c.Image, ":"); !ok || tag == "latest" {
			t.Errorf("%s/%s: image %s is not pinned to a version", what, c.Name, c.Image)
		}
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod may run as root", what)
	}
}

func container(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

func env(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// A PodDisruptionBudget and a NetworkPolicy select each workload's pods
// (each in its own file of the base); each emptyDir is bounded and pods
// of one workload prefer different nodes. workerscope's API admits the
// router only, the gateway the agents (workerscope's pods) only.
func TestDisruptionBudgetsAndNetworkPolicies(t *testing.T) {
	for _, target := range targets {
		o := load(t, target)
		pods := map[string]*corev1.PodTemplateSpec{}
		for n, s := range o.statefulSets {
			pods[n] = &s.Spec.Template
		}
		for n, d := range o.deployments {
			pods[n] = &d.Spec.Template
		}
		admits := map[string]string{"workerscope": "workerscope-router", "otel-gateway": "workerscope"}
		for name, tmpl := range pods {
			pdb := o.pdbs[name]
			if pdb == nil {
				t.Errorf("%s: no PodDisruptionBudget %s", target, name)
			} else {
				checkSelector(t, "PodDisruptionBudget "+name, pdb.Spec.Selector.MatchLabels, tmpl.Labels)
			}
			np := o.netpols[name]
			if np == nil {
				t.Errorf("%s: no NetworkPolicy %s", target, name)
				continue
			}
			checkSelector(t, "NetworkPolicy "+name, np.Spec.PodSelector.MatchLabels, tmpl.Labels)
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
				t.Errorf("%s: NetworkPolicy %s does not govern both ingress and egress: %v", target, name, np.Spec.PolicyTypes)
			}
			if from, ok := admits[name]; ok {
				for _, r := range np.Spec.Ingress {
					if len(r.From) == 0 {
						t.Errorf("%s: NetworkPolicy %s admits everyone", target, name)
					}
					for _, peer := range r.From {
						if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil ||
							peer.PodSelector.MatchLabels["app.kubernetes.io/name"] != from || len(peer.PodSelector.MatchLabels) != 1 {
							t.Errorf("%s: NetworkPolicy %s admits %+v, want only the pods of %s", target, name, peer, from)
						}
					}
				}
			}
			for _, v := range tmpl.Spec.Volumes {
				if v.EmptyDir != nil && (v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.Cmp(resource.MustParse("0")) <= 0) {
					t.Errorf("%s: %s: emptyDir %s has no sizeLimit", target, name, v.Name)
				}
			}
			if a := tmpl.Spec.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
				t.Errorf("%s: %s has no pod anti-affinity", target, name)
			}
		}
	}
}
