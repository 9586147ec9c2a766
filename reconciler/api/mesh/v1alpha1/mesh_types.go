package v1alpha1

import (
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshKind is the kind of a Mesh.
const MeshKind = "Mesh"

// Kinds of Flux sources a Mesh can read (source.toolkit.fluxcd.io).
const (
	GitRepositoryKind = "GitRepository"
	OCIRepositoryKind = "OCIRepository"
	BucketKind        = "Bucket"
)

// DefaultInterval is spec.interval when the Mesh does not set it (the
// CRD's default, so the API server writes it into the object).
const DefaultInterval = 10 * time.Minute

// Mesh compiles the mesh repository in a Flux source artifact and serves it
// to the mesh's Envoy proxies.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=weft
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].status",description="Ready condition status"
// +kubebuilder:printcolumn:name="Revision",type="string",JSONPath=".status.lastAppliedRevision",description="Revision being served"
// +kubebuilder:printcolumn:name="Proxies",type="string",JSONPath=".status.proxies.summary",description="Proxies in sync with the served revision / connected proxies"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Status",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].message",description="Ready condition message"
type Mesh struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is where the mesh repository is and how often to reconcile it.
	// +required
	Spec MeshSpec `json:"spec"`
	// Status is what is served, and why a revision is not.
	// +optional
	Status MeshStatus `json:"status,omitempty"`
}

// MeshSpec says where a mesh repository is and how to reconcile it.
type MeshSpec struct {
	// SourceRef is the Flux source whose artifact holds the mesh
	// repository.
	// +required
	SourceRef SourceReference `json:"sourceRef"`

	// Path is the folder of the mesh repository (the one holding cue.mod)
	// inside the artifact, relative to its root. Defaults to the root.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.split('/').exists(s, s == '..')",message="path must be relative and stay inside the artifact: no leading '/' and no '..' segment"
	// +optional
	Path string `json:"path,omitempty"`

	// Environment is the overlay unified with the base, as in
	// `weft build --env ENV`: the folder <path>/environments/ENV or
	// <path>/ENV. Empty compiles the base alone.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`
	// +optional
	Environment string `json:"environment,omitempty"`

	// Policies are extra folders of Rego and data files inside the
	// artifact, relative to its root, compiled with weft's default
	// policies (as `weft vet --policy DIR`).
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.all(p, p != '' && !p.startsWith('/') && !p.split('/').exists(s, s == '..'))",message="policy folders must be non-empty relative paths inside the artifact: no leading '/' and no '..' segment"
	// +listType=atomic
	// +optional
	Policies []string `json:"policies,omitempty"`

	// Interval is how often the Mesh is reconciled even when its source
	// does not change (a Go duration: 30s, 10m, 1h).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:default="10m"
	// +optional
	Interval metav1.Duration `json:"interval,omitzero"`

	// RetryInterval is how soon a failed reconciliation is retried.
	// Defaults to Interval.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +optional
	RetryInterval *metav1.Duration `json:"retryInterval,omitempty"`

	// Timeout bounds one reconciliation: fetching the artifact, vetting,
	// compiling and publishing it. Defaults to Interval.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Suspend stops reconciling: the last applied revision keeps being
	// served, new revisions of the source are ignored.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// SourceReference names the Flux source of a Mesh, in any namespace
// (the Mesh's own when Namespace is empty).
type SourceReference struct {
	// APIVersion of the source, e.g. source.toolkit.fluxcd.io/v1.
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`

	// Kind of the source.
	// +kubebuilder:validation:Enum=GitRepository;OCIRepository;Bucket
	// +required
	Kind string `json:"kind"`

	// Name of the source.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// Namespace of the source; defaults to the Mesh's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// MeshStatus is what the controller observed and serves.
type MeshStatus struct {
	meta.ReconcileRequestStatus `json:",inline"`

	// ObservedGeneration is the last generation of the spec the
	// controller reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (the last applied revision is served), Reconciling
	// and Stalled (abnormal-true, present only when True), with the
	// reasons of github.com/fluxcd/pkg/apis/meta and of this package.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// LastAppliedRevision is the source revision being served
	// (Flux's "<branch>@sha1:<commit>" form for a GitRepository).
	// +optional
	LastAppliedRevision string `json:"lastAppliedRevision,omitempty"`

	// LastAttemptedRevision is the last revision the controller tried to
	// serve, successfully or not.
	// +optional
	LastAttemptedRevision string `json:"lastAttemptedRevision,omitempty"`

	// SnapshotVersion identifies the configuration being served:
	// "<revision>/<hash>", as the xDS snapshot versions of its proxy
	// classes begin.
	// +optional
	SnapshotVersion string `json:"snapshotVersion,omitempty"`

	// Proxies counts the proxies of the mesh connected to the control
	// plane and how many run the served revision.
	// +optional
	Proxies *ProxiesStatus `json:"proxies,omitempty"`

	// Failure is why LastAttemptedRevision is not served; absent when the
	// last attempt succeeded.
	// +optional
	Failure *Failure `json:"failure,omitempty"`
}

// ProxiesStatus counts the xDS clients of a mesh.
type ProxiesStatus struct {
	// Total is the number of connected proxies.
	// +kubebuilder:validation:Minimum=0
	Total int32 `json:"total"`
	// InSync is how many of them ACKed the served snapshot version for
	// every xDS type they subscribe to.
	// +kubebuilder:validation:Minimum=0
	InSync int32 `json:"inSync"`
	// NACKing is how many of them rejected the last configuration sent.
	// +kubebuilder:validation:Minimum=0
	NACKing int32 `json:"nacking"`
	// Summary is "<inSync>/<total>", with ", <n> NACKing" when n > 0: the
	// PROXIES column of `kubectl get meshes`. Set it with SetCounts.
	// +optional
	Summary string `json:"summary,omitempty"`
	// NACKs are the last rejections, at most MaxNACKs, by proxy.
	// +kubebuilder:validation:MaxItems=10
	// +listType=atomic
	// +optional
	NACKs []ProxyNACK `json:"nacks,omitempty"`
}

// MaxNACKs is how many rejections ProxiesStatus.NACKs keeps.
const MaxNACKs = 10

// ProxyNACK is a configuration that a proxy rejected.
type ProxyNACK struct {
	// Proxy is the xDS node id.
	Proxy string `json:"proxy"`
	// Class is the proxy class, "<service>-<version>".
	// +optional
	Class string `json:"class,omitempty"`
	// Version is the snapshot version rejected.
	// +optional
	Version string `json:"version,omitempty"`
	// TypeURL is the xDS type of the rejected response.
	// +optional
	TypeURL string `json:"typeURL,omitempty"`
	// Resource is the rejected resource, when it can be told.
	// +optional
	Resource string `json:"resource,omitempty"`
	// File is where the resource was defined, when known.
	// +optional
	File string `json:"file,omitempty"`
	// Line is the line of File, 1-based.
	// +optional
	Line int32 `json:"line,omitempty"`
	// Message is Envoy's error_detail, verbatim.
	Message string `json:"message"`
}

// Steps of a reconciliation, in order (Failure.Step).
const (
	StepFetch   = "fetch"
	StepLoad    = "load"
	StepVet     = "vet"
	StepCompile = "compile"
	StepAccept  = "accept"
	StepPublish = "publish"
	StepRollout = "rollout"
)

// MaxProblems is how many problems Failure.Problems keeps; the others are
// counted in Failure.Truncated.
const MaxProblems = 50

// Failure is why a revision is not served.
type Failure struct {
	// Revision is the revision that failed.
	// +optional
	Revision string `json:"revision,omitempty"`
	// Step is the step of the pipeline that failed.
	// +kubebuilder:validation:Enum=fetch;load;vet;compile;accept;publish;rollout
	Step string `json:"step"`
	// Problems are the errors, each with its position in the mesh
	// repository when known, in the order weft vet prints them.
	// +kubebuilder:validation:MaxItems=50
	// +listType=atomic
	// +optional
	Problems []Problem `json:"problems,omitempty"`
	// Truncated is how many more problems there were.
	// +optional
	Truncated int32 `json:"truncated,omitempty"`
}

// Problem is one error with its position in the mesh repository. It
// mirrors reconciler/api/status.Problem field for field (FromStatusProblems).
type Problem struct {
	// File is relative to the mesh repository.
	// +optional
	File string `json:"file,omitempty"`
	// Line is the line of File, 1-based.
	// +optional
	Line int32 `json:"line,omitempty"`
	// Column is the column of Line, 1-based.
	// +optional
	Column int32 `json:"column,omitempty"`
	// Path is the CUE path of the offending value, e.g.
	// mesh.services.orders.routes[0].to.v2.
	// +optional
	Path string `json:"path,omitempty"`
	// Message says what is wrong.
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message"`
	// Fix says how to correct it, when weft knows.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Fix string `json:"fix,omitempty"`
}

// MeshList is a list of Meshes.
//
// +kubebuilder:object:root=true
type MeshList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Mesh `json:"items"`
}
