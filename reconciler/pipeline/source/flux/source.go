package flux

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/pipeline"
)

// SourceKinds are the kinds of Flux source a Mesh may name, each with a
// new empty object of its type (source.toolkit.fluxcd.io/v1).
func SourceKinds() map[string]func() Object {
	return map[string]func() Object{
		sourcev1.GitRepositoryKind: func() Object { return &sourcev1.GitRepository{} },
		sourcev1.OCIRepositoryKind: func() Object { return &sourcev1.OCIRepository{} },
		sourcev1.BucketKind:        func() Object { return &sourcev1.Bucket{} },
	}
}

// Object is a Flux source object: GitRepository, OCIRepository, Bucket.
type Object interface {
	client.Object
	GetArtifact() *meta.Artifact
}

// NewObject returns an empty object of a source kind, or an error naming
// the kinds there are.
func NewObject(kind string) (Object, error) {
	f, ok := SourceKinds()[kind]
	if !ok {
		return nil, fmt.Errorf("source kind %q: want GitRepository, OCIRepository or Bucket", kind)
	}
	return f(), nil
}

// GetArtifact reads the source object kind namespace/name and returns it
// with its artifact (nil when it has none yet).
func GetArtifact(ctx context.Context, c client.Reader, kind string, key client.ObjectKey) (Object, *meta.Artifact, error) {
	obj, err := NewObject(kind)
	if err != nil {
		return nil, nil, err
	}
	if err := c.Get(ctx, key, obj); err != nil {
		return nil, nil, err
	}
	return obj, obj.GetArtifact(), nil
}

// Source is a pipeline.Source over a Flux source object: each artifact
// with a digest not returned before is fetched (Fetcher.Fetch) and
// returned; Next polls the object every Poll meanwhile.
type Source struct {
	Fetcher *Fetcher
	Ref     Ref
	// Reader reads the object Kind Key (a controller-runtime client or
	// cache).
	Reader client.Reader
	Kind   string
	Key    client.ObjectKey
	// Poll is how often the object is read while its artifact is
	// unchanged (default 1s).
	Poll time.Duration

	last string // the digest last returned, or refused for good
}

func (s *Source) String() string {
	return fmt.Sprintf("Flux %s %s, folder %q (polled every %s)", s.Kind, s.Key, s.Ref.Path, s.poll())
}

func (s *Source) poll() time.Duration {
	if s.Poll <= 0 {
		return time.Second
	}
	return s.Poll
}

// Next returns the object's artifact once its digest differs from the
// last one returned. A source object that cannot be read, or has no
// artifact, is a retryable error at step fetch; so is an artifact that
// stalls (over the limits, no spec.path in it), once, after which Next
// waits for another artifact.
func (s *Source) Next(ctx context.Context) (pipeline.Revision, error) {
	for {
		_, a, err := GetArtifact(ctx, s.Reader, s.Kind, s.Key)
		switch {
		case ctx.Err() != nil:
			return pipeline.Revision{}, ctx.Err()
		case err != nil:
			return pipeline.Revision{}, pipeline.Retryable(s.Kind+" "+s.Key.String(), status.StepFetch, err)
		case a == nil:
			return pipeline.Revision{}, pipeline.Retryable(s.Kind+" "+s.Key.String(), status.StepFetch,
				errors.New("the source has no artifact yet (is source-controller running? kubectl describe shows why)"))
		case a.Digest != s.last:
			rev, err := s.Fetcher.Fetch(ctx, a, s.Ref)
			var se *pipeline.StallingError
			if errors.As(err, &se) {
				s.last = a.Digest
				return pipeline.Revision{}, &pipeline.RetryableError{Revision: se.Revision, Step: se.Step, Err: se.Err}
			}
			if err != nil {
				return pipeline.Revision{}, err
			}
			s.last = a.Digest
			return rev, nil
		}
		t := time.NewTimer(s.poll())
		select {
		case <-ctx.Done():
			t.Stop()
			return pipeline.Revision{}, ctx.Err()
		case <-t.C:
		}
	}
}
