package flux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/http/fetch"
	"github.com/fluxcd/pkg/tar"
	"github.com/spf13/pflag"

	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/schema"
)

// Defaults of Options.
const (
	// DefaultMaxDownloadBytes bounds a compressed artifact: 64 MiB, four
	// times the most the loader reads of one revision (16 MiB of CUE),
	// leaving room for what else a repository holds.
	DefaultMaxDownloadBytes = 64 << 20
	// DefaultMaxUntarBytes bounds what an artifact unpacks to: 256 MiB
	// (the controller's /tmp is an emptyDir of 1 GiB).
	DefaultMaxUntarBytes = 256 << 20
	// DefaultRetries is how often a download that fails with a 5xx or a
	// connection error is retried, 5 s apart and longer (Flux's
	// retryable HTTP client); the reconcile's retry interval takes over
	// after that.
	DefaultRetries = 3
)

// Options bound and direct the fetches of a Fetcher. Zero fields take
// the defaults.
type Options struct {
	// MaxDownloadBytes is the largest artifact downloaded (compressed).
	MaxDownloadBytes int64
	// MaxUntarBytes is the most an artifact may unpack to.
	MaxUntarBytes int64
	// Retries of a failed download (negative: none).
	Retries int
	// HostnameOverwrite replaces the host of artifact URLs (Flux's
	// SOURCE_CONTROLLER_LOCALHOST convention, for a controller run
	// outside the cluster).
	HostnameOverwrite string
	// TempDir is where artifacts are unpacked, one fresh directory each
	// (default os.TempDir()).
	TempDir string
}

// WithDefaults returns o with its zero fields set to the defaults.
func (o Options) WithDefaults() Options {
	if o.MaxDownloadBytes <= 0 {
		o.MaxDownloadBytes = DefaultMaxDownloadBytes
	}
	if o.MaxUntarBytes <= 0 {
		o.MaxUntarBytes = DefaultMaxUntarBytes
	}
	if o.Retries == 0 {
		o.Retries = DefaultRetries
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	return o
}

// BindFlags registers the options' flags on fs (--artifact-max-download-size,
// --artifact-max-untar-size, --artifact-fetch-retries), with the defaults;
// HostnameOverwrite defaults to $SOURCE_CONTROLLER_LOCALHOST, as in
// Flux's controllers.
func (o *Options) BindFlags(fs *pflag.FlagSet) {
	*o = o.WithDefaults()
	if o.HostnameOverwrite == "" {
		o.HostnameOverwrite = os.Getenv("SOURCE_CONTROLLER_LOCALHOST")
	}
	fs.Var((*byteSize)(&o.MaxDownloadBytes), "artifact-max-download-size", "largest Flux artifact downloaded, compressed (e.g. 64MiB)")
	fs.Var((*byteSize)(&o.MaxUntarBytes), "artifact-max-untar-size", "most a Flux artifact may unpack to (e.g. 256MiB)")
	fs.IntVar(&o.Retries, "artifact-fetch-retries", o.Retries, "retries of an artifact download that fails with a connection error or a 5xx")
}

// Ref says where the mesh repository is inside an artifact: a Mesh's
// spec.path and spec.policies, both relative to the artifact's root.
type Ref struct {
	// Path is the folder holding cue.mod ("" or "." : the root).
	Path string
	// Policies are extra policy folders.
	Policies []string
}

// Fetcher downloads, verifies and unpacks Flux artifacts. It is safe for
// concurrent use.
type Fetcher struct {
	opts  Options
	fetch *fetch.ArchiveFetcher
}

// NewFetcher returns a Fetcher with o (zero fields: the defaults).
func NewFetcher(o Options) *Fetcher {
	o = o.WithDefaults()
	return &Fetcher{opts: o, fetch: fetch.New(
		fetch.WithRetries(o.Retries),
		fetch.WithMaxDownloadSize(int(o.MaxDownloadBytes)),
		fetch.WithHostnameOverwrite(o.HostnameOverwrite),
		fetch.WithUntar(tar.WithMaxUntarSize(int(o.MaxUntarBytes))),
	)}
}

// Fetch downloads artifact a, refuses it unless its digest is a.Digest,
// unpacks it into a fresh directory below Options.TempDir and returns it
// as a revision named a.Revision whose Dir is ref.Path in it and whose
// PolicyDirs are ref.Policies. The caller must call Revision.Done. Errors
// are a *pipeline.RetryableError or a *pipeline.StallingError at step
// fetch (see the package doc).
func (f *Fetcher) Fetch(ctx context.Context, a *meta.Artifact, ref Ref) (pipeline.Revision, error) {
	if a == nil {
		return pipeline.Revision{}, pipeline.Retryable("", status.StepFetch, errors.New("the source has no artifact yet"))
	}
	dir, policies, err := ref.paths()
	if err != nil {
		return pipeline.Revision{}, stall(a.Revision, err)
	}
	tmp, err := os.MkdirTemp(f.opts.TempDir, tempPrefix)
	if err != nil {
		return pipeline.Revision{}, pipeline.Retryable(a.Revision, status.StepFetch, err)
	}
	rev := pipeline.Revision{Name: a.Revision, Dir: filepath.Join(tmp, dir), Cleanup: func() { _ = os.RemoveAll(tmp) }}
	if err := f.fetch.FetchWithContext(ctx, a.URL, a.Digest, tmp); err != nil {
		rev.Done()
		if ctx.Err() != nil {
			return pipeline.Revision{}, ctx.Err()
		}
		return pipeline.Revision{}, f.fetchError(a, err)
	}
	if err := isDir(tmp, dir, "spec.path"); err != nil {
		rev.Done()
		return pipeline.Revision{}, stall(a.Revision, err)
	}
	for _, p := range policies {
		if err := isDir(tmp, p, "spec.policies"); err != nil {
			rev.Done()
			return pipeline.Revision{}, stall(a.Revision, err)
		}
		rev.PolicyDirs = append(rev.PolicyDirs, filepath.Join(tmp, p))
	}
	return rev, nil
}

// paths cleans ref's folders; one that leaves the artifact is an error
// (the CRD refuses them too).
func (ref Ref) paths() (dir string, policies []string, err error) {
	clean := func(field, p string) (string, error) {
		c := path.Clean("/" + strings.TrimPrefix(p, "./"))[1:]
		if strings.HasPrefix(p, "/") || strings.Contains("/"+p+"/", "/../") {
			return "", fmt.Errorf("%s %q must be relative and stay inside the artifact", field, p)
		}
		if c == "" {
			c = "."
		}
		return filepath.FromSlash(c), nil
	}
	if dir, err = clean("spec.path", ref.Path); err != nil {
		return "", nil, err
	}
	for _, p := range ref.Policies {
		c, err := clean("spec.policies", p)
		if err != nil {
			return "", nil, err
		}
		policies = append(policies, c)
	}
	return dir, policies, nil
}

// isDir checks that rel is a directory inside root.
func isDir(root, rel, field string) error {
	st, err := os.Lstat(filepath.Join(root, rel))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s %q is not in the artifact: fix %s or add the folder to the repository", field, filepath.ToSlash(rel), field)
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%s %q is not a folder in the artifact", field, filepath.ToSlash(rel))
	}
	return nil
}

// fetchError types a failed download: what the same artifact will always
// do stalls, the rest is retried.
func (f *Fetcher) fetchError(a *meta.Artifact, err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, fetch.ErrFileNotFound):
		return pipeline.Retryable(a.Revision, status.StepFetch,
			fmt.Errorf("artifact %s not found (source-controller may have replaced it; its next artifact is awaited): %w", a.URL, err))
	case strings.Contains(msg, "greater than the max download size"):
		return stall(a.Revision, fmt.Errorf("artifact %s is over the download limit of %d bytes (--artifact-max-download-size): %w", a.URL, f.opts.MaxDownloadBytes, err))
	case strings.Contains(msg, "bigger than max archive size"):
		return stall(a.Revision, fmt.Errorf("artifact %s unpacks to more than %d bytes (--artifact-max-untar-size): %w", a.URL, f.opts.MaxUntarBytes, err))
	case strings.Contains(msg, "failed to extract archive"):
		return stall(a.Revision, fmt.Errorf("artifact %s: %w", a.URL, err))
	}
	return pipeline.Retryable(a.Revision, status.StepFetch, fmt.Errorf("artifact %s: %w", a.URL, err))
}

func stall(rev string, err error) error {
	return &pipeline.StallingError{Revision: rev, Step: status.StepFetch, Err: err}
}

// byteSize is a pflag.Value of a size in bytes (pipeline.ParseBytes).
type byteSize int64

func (b *byteSize) String() string { return schema.FormatBytes(int64(*b)) }
func (b *byteSize) Type() string   { return "size" }

func (b *byteSize) Set(s string) error {
	n, err := pipeline.ParseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// tempPrefix is the name of every directory Fetch unpacks into (plus a
// random suffix).
const tempPrefix = "weft-artifact-"

// artifactPath matches the unpacked directory's part of a path: whatever
// leads to, and includes, a "weft-artifact-<random>/" component.
var artifactPath = regexp.MustCompile(`(?:[^\s:"']*/)?` + tempPrefix + `[0-9]+/`)

// RelPaths rewrites the paths into a fetched artifact that s holds
// (file:line positions of CUE errors, policy findings and provenance) to
// paths relative to the artifact's root, as they are in the source
// repository: "/tmp/weft-artifact-123/environments/mesh.cue:3:1" becomes
// "environments/mesh.cue:3:1".
func RelPaths(s string) string { return artifactPath.ReplaceAllString(s, "") }

// Positions returns how to name, relative to the artifact's root (the
// repository), a file that a check of revision rev reported: a schema
// error's absolute path into the unpacked artifact, or a policy
// finding's path relative to the CUE module (the folder holding cue.mod,
// at or above rev.Dir). Call it before rev.Done.
func Positions(rev pipeline.Revision) func(file string) string {
	module := ""
	root := artifactRoot(rev.Dir)
	for d := rev.Dir; root != "" && strings.HasPrefix(d, root); d = filepath.Dir(d) {
		if st, err := os.Stat(filepath.Join(d, "cue.mod")); err == nil && st.IsDir() {
			if rel, err := filepath.Rel(root, d); err == nil && rel != "." {
				module = filepath.ToSlash(rel)
			}
			break
		}
		if d == root {
			break
		}
	}
	return func(file string) string {
		switch {
		case file == "":
			return ""
		case filepath.IsAbs(file):
			return RelPaths(file)
		case module != "":
			return path.Join(module, filepath.ToSlash(file))
		}
		return filepath.ToSlash(file)
	}
}

// artifactRoot is the unpacked directory that dir is in ("" if none).
func artifactRoot(dir string) string {
	loc := artifactPath.FindStringIndex(dir + "/")
	if loc == nil {
		return ""
	}
	return filepath.Clean((dir + "/")[:loc[1]])
}
