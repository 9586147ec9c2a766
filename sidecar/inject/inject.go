package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/sidecar/agent"
	"github.com/weft-dev/weft/sidecar/netinit"
)

// Outcome is what Pod or Template did.
type Outcome struct {
	// Injected: the pod now has the proxy (it may have had it before).
	Injected bool
	// Skipped says why the pod was left unchanged, when it was.
	Skipped string
	// Service is the pod's mesh service (ServiceName), when injected.
	Service string
	// Warnings are for the user (admission warnings, the CLI's stderr):
	// probes left as written, and the like.
	Warnings []string
}

// Pod injects the sidecar into pod, in place, unless it opts out, runs
// in the node's network, has no mesh service name, or is in a namespace
// that is never injected (namespace: the pod's, which at admission is the
// request's; "" when unknown). Errors: a bad Options or annotation, named
// with its value and what is expected.
func Pod(pod *corev1.Pod, namespace string, opts Options) (Outcome, error) {
	if namespace == "" {
		namespace = pod.Namespace
	}
	return Template(&pod.ObjectMeta, &pod.Spec, namespace, opts)
}

// Template is Pod for a pod template (a Deployment's spec.template, ...):
// meta and spec are changed in place.
func Template(meta *metav1.ObjectMeta, spec *corev1.PodSpec, namespace string, opts Options) (Outcome, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return Outcome{}, err
	}
	if why := skip(meta, spec, namespace, o); why != "" {
		return Outcome{Skipped: why}, nil
	}
	svc, err := ServiceName(meta)
	if err != nil {
		return Outcome{}, err
	}
	if svc == "" {
		// Unlike an opt-out, this is probably a mistake: it gets a warning.
		why := fmt.Sprintf("no mesh service name: set the label %s (or %s or app), or the annotation %s",
			compiler.ServiceLabel, "app.kubernetes.io/name", ServiceAnnotation)
		return Outcome{Skipped: why, Warnings: []string{"weft: the pod is not in the mesh: " + why}}, nil
	}
	redirect, err := redirectConfig(meta.Annotations)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Injected: true, Service: svc}

	// Injecting again starts from the pod as it was before: what an
	// earlier injection added is removed first, and its record of the
	// app's probes is kept for the probes it rewrote.
	previous := previousProbes(spec)
	strip(spec)

	probes := agent.AppProbes{}
	if meta.Annotations[RewriteProbesAnnotation] != "false" {
		probes, out.Warnings = rewriteProbes(spec, previous)
	}
	out.Warnings = append(out.Warnings, proxyUIDWarnings(spec)...)
	proxy, err := proxyContainer(o, probes)
	if err != nil {
		return Outcome{}, err
	}
	spec.InitContainers = append([]corev1.Container{initContainer(o, redirect), proxy}, spec.InitContainers...)
	// The projected token needs a service account name; the API server's
	// ServiceAccount admission sets "default" before webhooks run, a
	// manifest injected by `weft inject` may have none yet.
	if spec.ServiceAccountName == "" {
		spec.ServiceAccountName = "default"
	}
	spec.Volumes = append(spec.Volumes, volumes(o)...)

	if meta.Labels == nil {
		meta.Labels = map[string]string{}
	}
	meta.Labels[compiler.ServiceLabel] = svc
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[VersionAnnotation] = o.Version
	return out, nil
}

// skip is why a pod is not injected, "" if it is.
func skip(meta *metav1.ObjectMeta, spec *corev1.PodSpec, namespace string, o Options) string {
	if v := meta.Annotations[InjectKey]; v == Disabled {
		return fmt.Sprintf("annotation %s: %s", InjectKey, Disabled)
	}
	if spec.HostNetwork {
		return "hostNetwork: the pod shares the node's network namespace, whose traffic netinit must not redirect"
	}
	if slices.Contains(SystemNamespaces, namespace) {
		return fmt.Sprintf("namespace %s is never injected", namespace)
	}
	if namespace != "" && namespace == o.ControlPlaneNamespace {
		return fmt.Sprintf("namespace %s is weft's own", namespace)
	}
	return ""
}

// ServiceName is the mesh service of a pod: the label
// mesh.weft.dev/service, else the annotation weft.dev/service, else the
// label app.kubernetes.io/name, else the label app; "" when none is set.
// The value must be a valid label value that names a service (a DNS-1123
// label).
func ServiceName(meta *metav1.ObjectMeta) (string, error) {
	for _, src := range []struct {
		what, key string
		from      map[string]string
	}{
		{"label", compiler.ServiceLabel, meta.Labels},
		{"annotation", ServiceAnnotation, meta.Annotations},
		{"label", "app.kubernetes.io/name", meta.Labels},
		{"label", "app", meta.Labels},
	} {
		v, ok := src.from[src.key]
		if !ok {
			continue
		}
		if errs := validation.IsDNS1123Label(v); len(errs) > 0 {
			return "", fmt.Errorf("inject: %s %s=%q is not a mesh service name: %s", src.what, src.key, v, strings.Join(errs, "; "))
		}
		return v, nil
	}
	return "", nil
}

// redirectConfig is netinit's Config for a pod: the agent's health port and
// Envoy's stats port, plus the annotations' exclusions.
func redirectConfig(ann map[string]string) (netinit.Config, error) {
	c := netinit.DefaultConfig()
	c.ProxyUID = ProxyUID
	c.ExcludeInboundPorts = []uint16{HealthPort, StatsPort}
	var errs []error
	if v, ok := ann[ExcludeInboundPortsAnnotation]; ok {
		ps, err := netinit.ParsePorts(v)
		errs = append(errs, annotationErr(ExcludeInboundPortsAnnotation, err))
		c.ExcludeInboundPorts = append(c.ExcludeInboundPorts, ps...)
	}
	if v, ok := ann[ExcludeOutboundPortsAnnotation]; ok {
		ps, err := netinit.ParsePorts(v)
		errs = append(errs, annotationErr(ExcludeOutboundPortsAnnotation, err))
		c.ExcludeOutboundPorts = ps
	}
	if v, ok := ann[ExcludeInboundIPRangesAnnotation]; ok {
		cs, err := netinit.ParseCIDRs(v)
		errs = append(errs, annotationErr(ExcludeInboundIPRangesAnnotation, err))
		c.ExcludeInboundCIDRs = cs
	}
	if v, ok := ann[ExcludeOutboundIPRangesAnnotation]; ok {
		cs, err := netinit.ParseCIDRs(v)
		errs = append(errs, annotationErr(ExcludeOutboundIPRangesAnnotation, err))
		c.ExcludeOutboundCIDRs = cs
	}
	return c, errors.Join(errs...)
}

func annotationErr(key string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("inject: annotation %s: %w", key, err)
}

// proxyUIDWarnings: an app container that runs as the proxy's uid is not
// redirected (netinit lets that uid through), so its traffic bypasses the
// proxy.
func proxyUIDWarnings(spec *corev1.PodSpec) []string {
	var out []string
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		uid := (*int64)(nil)
		if spec.SecurityContext != nil {
			uid = spec.SecurityContext.RunAsUser
		}
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			uid = c.SecurityContext.RunAsUser
		}
		if uid != nil && *uid == ProxyUID {
			out = append(out, fmt.Sprintf("container %s runs as uid %d, the proxy's: its connections bypass the proxy (no mTLS, no routing, no authorization of its calls)", c.Name, ProxyUID))
		}
	}
	return out
}

// strip removes what an earlier injection added.
func strip(spec *corev1.PodSpec) {
	ours := func(name string) bool { return name == InitContainerName || name == ProxyContainerName }
	spec.InitContainers = slices.DeleteFunc(spec.InitContainers, func(c corev1.Container) bool { return ours(c.Name) })
	spec.Containers = slices.DeleteFunc(spec.Containers, func(c corev1.Container) bool { return ours(c.Name) })
	spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v corev1.Volume) bool {
		return v.Name == RunVolume || v.Name == TokenVolume || v.Name == PodInfoVolume || v.Name == XtablesVolume
	})
	if len(spec.InitContainers) == 0 {
		spec.InitContainers = nil
	}
	if len(spec.Volumes) == 0 {
		spec.Volumes = nil
	}
}

// previousProbes are the app probes an earlier injection rewrote, from its
// proxy container's environment.
func previousProbes(spec *corev1.PodSpec) agent.AppProbes {
	for _, c := range spec.InitContainers {
		if c.Name != ProxyContainerName {
			continue
		}
		for _, e := range c.Env {
			if e.Name == agent.EnvAppProbes {
				var p agent.AppProbes
				if json.Unmarshal([]byte(e.Value), &p) == nil {
					return p
				}
			}
		}
	}
	return nil
}

// initContainer runs `weft netinit`: root with NET_ADMIN and NET_RAW and
// nothing else.
func initContainer(o Options, redirect netinit.Config) corev1.Container {
	return corev1.Container{
		Name:            InitContainerName,
		Image:           o.InitImage,
		ImagePullPolicy: o.PullPolicy,
		Command:         []string{WeftBinary, "netinit"},
		Args:            redirect.Args(),
		Resources:       *o.InitResources.DeepCopy(),
		VolumeMounts:    []corev1.VolumeMount{{Name: XtablesVolume, MountPath: "/run"}},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](0),
			RunAsGroup:               ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// proxyContainer runs `weft agent` (which runs Envoy) as a native sidecar:
// an init container that restarts always, started before the app and
// stopped after it; the startup probe holds the app back until the proxy
// is ready (Envoy has its listeners and the workload certificate).
func proxyContainer(o Options, probes agent.AppProbes) (corev1.Container, error) {
	args := []string{
		"--ca-address=" + o.CAAddress,
		"--xds-address=" + o.XDSAddress,
		"--token-file=" + TokenFile,
		"--socket=" + RunDir + "/agent.sock",
		"--bootstrap=" + RunDir + "/envoy.yaml",
		"--health-address=0.0.0.0:" + strconv.Itoa(HealthPort),
		"--stats-address=0.0.0.0:" + strconv.Itoa(StatsPort),
		"--envoy=" + EnvoyBinary,
		"--pod-info=" + PodInfoDir,
	}
	if o.TrustDomain != "" {
		args = append(args, "--trust-domain="+o.TrustDomain)
	}
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}
	}
	env := []corev1.EnvVar{
		{Name: agent.EnvPodName, ValueFrom: field("metadata.name")},
		{Name: agent.EnvPodNamespace, ValueFrom: field("metadata.namespace")},
		{Name: agent.EnvService, ValueFrom: field("metadata.labels['" + compiler.ServiceLabel + "']")},
		{Name: agent.EnvTrustBundle, Value: string(o.TrustBundle)},
	}
	if len(probes) > 0 {
		b, err := json.Marshal(probes) // map keys sorted: deterministic
		if err != nil {
			return corev1.Container{}, err
		}
		env = append(env, corev1.EnvVar{Name: agent.EnvAppProbes, Value: string(b)})
	}
	health := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intOrString(HealthPort), Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds: period, FailureThreshold: failures, TimeoutSeconds: 3, SuccessThreshold: 1,
		}
	}
	return corev1.Container{
		Name:            ProxyContainerName,
		Image:           o.ProxyImage,
		ImagePullPolicy: o.PullPolicy,
		Command:         []string{WeftBinary, "agent"},
		Args:            args,
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: "weft-health", ContainerPort: HealthPort, Protocol: corev1.ProtocolTCP},
			{Name: "weft-metrics", ContainerPort: StatsPort, Protocol: corev1.ProtocolTCP},
		},
		Resources:     *o.ProxyResources.DeepCopy(),
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		// Up to 10 minutes for the first certificate and configuration;
		// the agent's /ready says what it waits for.
		StartupProbe:   health("/ready", 1, 600),
		ReadinessProbe: health("/ready", 5, 3),
		LivenessProbe:  health("/healthz", 10, 6),
		VolumeMounts: []corev1.VolumeMount{
			{Name: RunVolume, MountPath: RunDir},
			{Name: TokenVolume, MountPath: TokenDir, ReadOnly: true},
			{Name: PodInfoVolume, MountPath: PodInfoDir, ReadOnly: true},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](ProxyUID),
			RunAsGroup:               ptr.To[int64](ProxyUID),
			RunAsNonRoot:             ptr.To(true),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}, nil
}

// volumes are the proxy's and netinit's volumes.
func volumes(o Options) []corev1.Volume {
	memory := &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}
	return []corev1.Volume{
		{Name: RunVolume, VolumeSource: corev1.VolumeSource{EmptyDir: memory}},
		{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: o.TokenAudience, ExpirationSeconds: ptr.To(o.TokenExpirationSeconds), Path: "token",
			}}},
		}}},
		{Name: PodInfoVolume, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.labels"}}},
		}}},
		{Name: XtablesVolume, VolumeSource: corev1.VolumeSource{EmptyDir: memory.DeepCopy()}},
	}
}
