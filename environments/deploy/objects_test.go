package deploy_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/environments/deploy"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/sidecar/webhook"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/ from the current output")

// manifests are the rendered objects, decoded strictly into their Go types.
type manifests struct {
	ns          corev1.Namespace
	sa          corev1.ServiceAccount
	clusterRole rbacv1.ClusterRole
	role        rbacv1.Role
	crb         rbacv1.ClusterRoleBinding
	rb          rbacv1.RoleBinding
	svc         corev1.Service
	deploy      appsv1.Deployment
	pdb         policyv1.PodDisruptionBudget
	mwc         admissionregistrationv1.MutatingWebhookConfiguration
}

func decode(t *testing.T, opts deploy.Options) *manifests {
	t.Helper()
	b, err := deploy.Render(opts)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{}
	targets := map[string]any{
		"Namespace": &m.ns, "ServiceAccount": &m.sa, "ClusterRole": &m.clusterRole, "Role": &m.role,
		"ClusterRoleBinding": &m.crb, "RoleBinding": &m.rb, "Service": &m.svc, "Deployment": &m.deploy,
		"PodDisruptionBudget": &m.pdb, "MutatingWebhookConfiguration": &m.mwc,
	}
	for _, o := range objects(t, b) {
		kind := o["kind"].(string)
		if kind == "CustomResourceDefinition" {
			continue
		}
		v, ok := targets[kind]
		if !ok {
			t.Fatalf("unexpected kind %s", kind)
		}
		strict(t, o, v)
		delete(targets, kind)
	}
	if len(targets) > 0 {
		t.Fatalf("missing kinds: %v", targets)
	}
	return m
}

// The controller's pods pass Pod Security "restricted" (the namespace
// enforces it), evaluated by the admission plugin's own library.
func TestControllerPodIsRestricted(t *testing.T) {
	m := decode(t, deploy.Options{})
	if m.ns.Labels[psapi.EnforceLevelLabel] != string(psapi.LevelRestricted) {
		t.Errorf("namespace labels %v: want pod-security enforce=restricted", m.ns.Labels)
	}
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
	tmpl := m.deploy.Spec.Template
	for _, r := range ev.EvaluatePod(lv, &tmpl.ObjectMeta, &tmpl.Spec) {
		if !r.Allowed {
			t.Errorf("Pod Security restricted: %s: %s", r.ForbiddenReason, r.ForbiddenDetail)
		}
	}
}

// The Deployment is what the issue asks for, and its parts refer to each
// other correctly: ports, probes, labels, selectors, the names the Role
// grants and the flags that use them, and the labels the compiled
// NetworkPolicies admit.
func TestManifestsAreConsistent(t *testing.T) {
	m := decode(t, deploy.Options{})
	d := m.deploy
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	podLabels := d.Spec.Template.Labels
	if d := cmp.Diff(compiler.DefaultControlPlaneLabels(), podLabels); d != "" {
		t.Errorf("pod labels differ from compiler.DefaultControlPlaneLabels (the NetworkPolicies' control-plane peer) (-want +got):\n%s", d)
	}
	for what, sel := range map[string]*metav1.LabelSelector{"deployment": d.Spec.Selector, "pdb": m.pdb.Spec.Selector} {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || !s.Matches(labels.Set(podLabels)) {
			t.Errorf("%s selector %v does not select the pods %v", what, sel, podLabels)
		}
	}
	if !labels.SelectorFromSet(m.svc.Spec.Selector).Matches(labels.Set(podLabels)) {
		t.Errorf("service selector %v does not select the pods", m.svc.Spec.Selector)
	}
	if m.pdb.Spec.MinAvailable == nil || m.pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PDB minAvailable %v, want 1", m.pdb.Spec.MinAvailable)
	}

	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "localhost/weft:dev" || c.ImagePullPolicy != corev1.PullNever || c.Args[0] != "controller" {
		t.Errorf("image %s pull %s args %v: want localhost/weft:dev, Never, controller ...", c.Image, c.ImagePullPolicy, c.Args)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if want := map[string]int32{"grpc-xds": 15010, "grpc-ca": 15012, "http-metrics": 8080, "http-health": 9440, "https-webhook": 9443}; !cmp.Equal(ports, want) {
		t.Errorf("container ports %v, want %v", ports, want)
	}
	for _, p := range m.svc.Spec.Ports {
		if _, ok := ports[p.TargetPort.String()]; !ok {
			t.Errorf("service port %s targets %s, which the container does not have", p.Name, p.TargetPort.String())
		}
	}
	for name, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Port.String() != "http-health" {
			t.Errorf("%s probe %+v: want an HTTP GET on http-health", name, probe)
		}
	}
	// Every address flag listens on the port the manifest declares.
	flags := map[string]string{}
	for _, a := range c.Args[1:] {
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		flags[k] = v
	}
	for flag, port := range map[string]string{"xds-address": "15010", "ca-address": "15012", "metrics-bind-address": "8080", "health-probe-bind-address": "9440",
		"webhook-address": "9443"} {
		if flags[flag] != ":"+port {
			t.Errorf("--%s=%q, want :%s", flag, flags[flag], port)
		}
	}
	// The Role grants exactly the Lease and Secret the flags name; the
	// ClusterRole exactly the webhook.
	named := map[string][]string{}
	for _, r := range slices.Concat(m.role.Rules, m.clusterRole.Rules) {
		for _, res := range r.Resources {
			named[res] = append(named[res], r.ResourceNames...)
		}
	}
	for res, fl := range map[string][]string{"leases": {"leader-election-id"}, "secrets": {"ca-secret", "webhook-secret"},
		"mutatingwebhookconfigurations": {"injector-webhook"}} {
		var want []string
		for _, f := range fl {
			v, ok := flags[f]
			if !ok {
				t.Errorf("no --%s", f)
			}
			want = append(want, v)
		}
		if !cmp.Equal(named[res], want) {
			t.Errorf("--%s=%q but the roles name %v %s", strings.Join(fl, ", --"), want, named[res], res)
		}
	}
	if m.mwc.Name != flags["injector-webhook"] {
		t.Errorf("--injector-webhook=%s, the MutatingWebhookConfiguration is %s", flags["injector-webhook"], m.mwc.Name)
	}
	if _, ok := flags["leader-elect"]; !ok {
		t.Error("no --leader-elect: two replicas would both write status")
	}
	if d.Spec.Template.Spec.ServiceAccountName != m.sa.Name {
		t.Errorf("pods run as %q, the bindings bind %q", d.Spec.Template.Spec.ServiceAccountName, m.sa.Name)
	}
}

// TestInjectorWebhook: the MutatingWebhookConfiguration sends pod
// creations in namespaces labelled weft.dev/inject=enabled — never the
// system namespaces nor weft's own — to the controller's webhook port
// and path, fails closed, and leaves its caBundle to the controller.
func TestInjectorWebhook(t *testing.T) {
	m := decode(t, deploy.Options{})
	if len(m.mwc.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(m.mwc.Webhooks))
	}
	w := m.mwc.Webhooks[0]
	if *w.FailurePolicy != admissionregistrationv1.Fail || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
		!slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) || *w.TimeoutSeconds > 10 {
		t.Errorf("failurePolicy %v sideEffects %v versions %v timeout %v", *w.FailurePolicy, *w.SideEffects, w.AdmissionReviewVersions, *w.TimeoutSeconds)
	}
	if len(w.ClientConfig.CABundle) != 0 || w.ClientConfig.URL != nil {
		t.Error("the manifest sets a caBundle or a URL: the controller keeps the caBundle, the service is the controller's")
	}
	svc := w.ClientConfig.Service
	if svc.Name != m.svc.Name || svc.Namespace != m.svc.Namespace || *svc.Path != webhook.Path {
		t.Errorf("clientConfig.service %+v: want %s/%s path %s", svc, m.svc.Namespace, m.svc.Name, webhook.Path)
	}
	target := ""
	for _, p := range m.svc.Spec.Ports {
		if p.Port == *svc.Port {
			target = p.TargetPort.String()
		}
	}
	if target != "https-webhook" {
		t.Errorf("service port %d targets %q, want the container's https-webhook", *svc.Port, target)
	}
	if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) ||
		!slices.Equal(w.Rules[0].Resources, []string{"pods"}) || !slices.Equal(w.Rules[0].APIGroups, []string{""}) {
		t.Errorf("rules %+v: want CREATE of core pods only", w.Rules)
	}
	sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]bool{"shop": true, "kube-system": false, "kube-public": false, "kube-node-lease": false} {
		labelled := labels.Set{"weft.dev/inject": "enabled", "kubernetes.io/metadata.name": ns}
		if got := sel.Matches(labelled); got != want {
			t.Errorf("namespace %s labelled weft.dev/inject=enabled selected: %v, want %v", ns, got, want)
		}
	}
	for _, opts := range []deploy.Options{{}, {Namespace: "mesh-system"}} {
		own := decode(t, opts).ns
		l := labels.Merge(own.Labels, labels.Set{"weft.dev/inject": "enabled", "kubernetes.io/metadata.name": own.Name})
		if sel.Matches(l) {
			t.Errorf("weft's own namespace %s (labels %v), even labelled weft.dev/inject=enabled, is selected", own.Name, own.Labels)
		}
	}
	for _, l := range []labels.Set{{"kubernetes.io/metadata.name": "shop"}, {"weft.dev/inject": "disabled", "kubernetes.io/metadata.name": "shop"}} {
		if sel.Matches(l) {
			t.Errorf("namespace %v selected", l)
		}
	}
}

// Moving the control plane moves everything that names its namespace.
func TestNamespaceFlagMovesBindings(t *testing.T) {
	m := decode(t, deploy.Options{Namespace: "mesh-system"})
	for _, got := range []string{m.ns.Name, m.sa.Namespace, m.role.Namespace, m.rb.Namespace, m.svc.Namespace, m.deploy.Namespace, m.pdb.Namespace,
		m.crb.Subjects[0].Namespace, m.rb.Subjects[0].Namespace, m.mwc.Webhooks[0].ClientConfig.Service.Namespace} {
		if got != "mesh-system" {
			t.Errorf("an object or subject is in %q, want mesh-system", got)
		}
	}
}

// Every object's metadata is valid (names, labels), as the API server
// checks it.
func TestObjectMetadataIsValid(t *testing.T) {
	b, err := deploy.Render(deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objects(t, b) {
		var md metav1.ObjectMeta
		strict(t, o["metadata"], &md)
		errs := metav1validation.ValidateLabels(md.Labels, field.NewPath("metadata", "labels"))
		if len(errs) > 0 {
			t.Errorf("%s %s: %v", o["kind"], md.Name, errs.ToAggregate())
		}
	}
}

// TestRBACIsExactlyWhatTheControllerNeeds pins every verb the controller
// is granted (testdata/rbac.golden; -update rewrites it). A new verb is a
// reviewed change to this file, never a side effect.
func TestRBACIsExactlyWhatTheControllerNeeds(t *testing.T) {
	m := decode(t, deploy.Options{})
	var b strings.Builder
	write := func(scope string, rules []rbacv1.PolicyRule) {
		for _, r := range rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					group := g
					if group == "" {
						group = "core"
					}
					names := ""
					if len(r.ResourceNames) > 0 {
						names = " names=" + strings.Join(r.ResourceNames, ",")
					}
					fmt.Fprintf(&b, "%-22s %-30s %-32s %s%s\n", scope, group, res, strings.Join(r.Verbs, ","), names)
				}
			}
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("%s grants non-resource URLs %v", scope, r.NonResourceURLs)
			}
		}
	}
	write("cluster", m.clusterRole.Rules)
	write("namespace "+m.role.Namespace, m.role.Rules)
	got := b.String()
	if strings.Contains(got, "*") {
		t.Errorf("a wildcard in the RBAC:\n%s", got)
	}
	file := filepath.Join("testdata", "rbac.golden")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./environments/deploy -update)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("the controller's RBAC changed (-golden +now; -update to accept after review):\n%s", d)
	}
	// Secrets are readable in the controller's namespace only, and only
	// the CA root.
	for _, r := range m.clusterRole.Rules {
		if slices.Contains(r.Resources, "secrets") {
			t.Errorf("the ClusterRole grants secrets cluster-wide: %+v", r)
		}
	}
	if m.crb.RoleRef.Name != m.clusterRole.Name || m.rb.RoleRef.Name != m.role.Name ||
		m.crb.Subjects[0].Name != m.sa.Name || m.rb.Subjects[0].Name != m.sa.Name {
		t.Errorf("bindings %+v %+v do not bind the roles to the service account", m.crb, m.rb)
	}
}

// Every field of the Go types is in the CRD's schema: a Mesh with all of
// them set is admitted with nothing pruned (the API server would silently
// drop a field the schema lacks).
func TestEveryGoFieldIsInTheSchema(t *testing.T) {
	dur := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	m := meshv1.Mesh{
		TypeMeta:   metav1.TypeMeta{APIVersion: meshv1.GroupVersion.String(), Kind: meshv1.MeshKind},
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "weft-system"},
		Spec: meshv1.MeshSpec{
			SourceRef:     meshv1.SourceReference{APIVersion: "source.toolkit.fluxcd.io/v1", Kind: meshv1.OCIRepositoryKind, Name: "shop", Namespace: "flux-system"},
			Path:          "./environments",
			Environment:   "prod",
			Policies:      []string{"policies/extra"},
			Interval:      *dur(5 * time.Minute),
			RetryInterval: dur(time.Minute),
			Timeout:       dur(2 * time.Minute),
			Suspend:       true,
		},
		Status: meshv1.MeshStatus{
			ObservedGeneration:    2,
			Conditions:            []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: meshv1.LoadFailedReason, Message: "orders.cue:12:3: unknown version", LastTransitionTime: metav1.Now()}},
			LastAppliedRevision:   "main@sha1:1111",
			LastAttemptedRevision: "main@sha1:2222",
			SnapshotVersion:       "main@sha1:1111/0123456789ab",
			Proxies: &meshv1.ProxiesStatus{NACKs: []meshv1.ProxyNACK{{
				Proxy: "orders-v1-abc", Class: "orders-v1", Version: "v", TypeURL: "type.googleapis.com/envoy.config.listener.v3.Listener",
				Resource: "inbound", File: "orders.cue", Line: 3, Message: "rejected",
			}}},
			Failure: &meshv1.Failure{Revision: "main@sha1:2222", Step: meshv1.StepLoad, Truncated: 1, Problems: []meshv1.Problem{{
				File: "orders.cue", Line: 12, Column: 3, Path: "mesh.services.orders.routes[0].to.v3", Message: "unknown version v3", Fix: "use v1 or v2",
			}}},
		},
	}
	m.Status.LastHandledReconcileAt = "2026-11-30T10:00:00Z"
	m.Status.Proxies.SetCounts(3, 2, 1)
	j, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(j, &obj); err != nil {
		t.Fatal(err)
	}
	pruned, errs := newMeshSchema(t).admit(obj)
	if len(pruned) > 0 {
		t.Errorf("the API server would drop %v: the CRD is stale (make generate)", pruned)
	}
	if len(errs) > 0 {
		t.Errorf("a Mesh built from the Go types is refused: %v", errs.ToAggregate())
	}
}

// The Flux example applies as is: its Mesh passes the CRD, its
// GitRepository decodes strictly into source-controller's API types, the
// folder and environment it names exist, and its NetworkPolicy lets the
// controller's pods reach source-controller.
func TestFluxExample(t *testing.T) {
	root := filepath.Join(dir(t), "..", "..")
	b, err := os.ReadFile(filepath.Join(root, "environments", "flux", "shop.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := objects(t, b)
	if got := kinds(objs); !cmp.Equal(got, []string{"GitRepository/weft-system/weft-shop", "Mesh/weft-system/shop", "NetworkPolicy/flux-system/allow-weft-artifacts"}) {
		t.Fatalf("objects %v", got)
	}
	var repo sourcev1.GitRepository
	strict(t, objs[0], &repo)
	if repo.Spec.Reference == nil || repo.Spec.Reference.Branch == "" || repo.Spec.Ignore == nil {
		t.Errorf("GitRepository %+v: want a branch and an ignore list", repo.Spec)
	}

	s := newMeshSchema(t)
	pruned, errs := s.admit(objs[1])
	if len(pruned) > 0 || len(errs) > 0 {
		t.Fatalf("the example Mesh: pruned %v, errors %v", pruned, errs.ToAggregate())
	}
	var mesh meshv1.Mesh
	strict(t, objs[1], &mesh)
	if mesh.Spec.SourceRef.Kind != repo.Kind || mesh.Spec.SourceRef.Name != repo.Name || mesh.SourceNamespace() != repo.Namespace {
		t.Errorf("the Mesh points at %+v, not at the GitRepository %s/%s", mesh.Spec.SourceRef, repo.Namespace, repo.Name)
	}
	meshDir := filepath.Join(root, filepath.FromSlash(mesh.Spec.Path))
	if got := schema.Environments(meshDir); !slices.Contains(got, mesh.Spec.Environment) {
		t.Errorf("environment %q is not one of %s's: %v", mesh.Spec.Environment, mesh.Spec.Path, got)
	}
	if !strings.Contains(*repo.Spec.Ignore, "!/"+strings.TrimPrefix(mesh.Spec.Path, "./")+"/") {
		t.Errorf("the GitRepository's ignore list %q leaves %s out of the artifact", *repo.Spec.Ignore, mesh.Spec.Path)
	}

	var np networkingv1.NetworkPolicy
	strict(t, objs[2], &np)
	peer := np.Spec.Ingress[0].From[0]
	if !labels.SelectorFromSet(peer.PodSelector.MatchLabels).Matches(labels.Set(compiler.DefaultControlPlaneLabels())) ||
		peer.NamespaceSelector.MatchLabels[compiler.NamespaceNameLabel] != deploy.DefaultNamespace {
		t.Errorf("the flux-system NetworkPolicy admits %+v, not weft's controller", peer)
	}
}
