package clustertest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Teardown removes everything a cluster called name under baseDir left
// on the machine, whether it was stopped, killed or never finished
// starting: every process in its network namespace, in its cgroups
// (k8s-<name>, the pods) or naming its work dir on its command line
// (containerd shims, the netns proxy) is killed (SIGKILL: the cluster's
// state is thrown away, so nothing needs a clean stop); every mount under
// the work dir (pod netns files, overlay root file systems, kubelet's
// tmpfs volumes) is unmounted; the netns is deleted; the cgroups are
// removed deepest first; kubelet's symlinks in /var/log/containers that
// point into the work dir are deleted; the work dir is removed except its
// logs/ folder (kept for a failed run's inspection). Each step is tried
// even if an earlier one failed; the errors are joined.
//
// It only ever touches processes, mounts, cgroups and files it can tie to
// this cluster's name or work dir.
func Teardown(baseDir, name string) error {
	_, err := teardown(baseDir, name)
	return err
}

// teardown is Teardown; it also returns the files outside the work dir
// that it removed (containerd's shim sockets, the CNI result cache).
func teardown(baseDir, name string) ([]string, error) {
	l := layout{w: filepath.Join(baseDir, name)}
	var errs []error
	hostFiles := containerdHostFiles(l)
	if err := killAll(l, name); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(l.w); err != nil {
		errs = append(errs, err)
	}
	if err := deleteNetns(name); err != nil {
		errs = append(errs, err)
	}
	if err := removeCgroups(cgroupName(name)); err != nil {
		errs = append(errs, err)
	}
	if err := removeLogLinks(l.w); err != nil {
		errs = append(errs, err)
	}
	for _, f := range hostFiles {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := removeAllBut(l.w, "logs"); err != nil {
		errs = append(errs, err)
	}
	return hostFiles, errors.Join(errs...)
}

// containerdHostFiles are the files that containerd 1.6 keeps outside
// its root and state for the cluster's sandboxes and containers, which a
// clean stop removes and a SIGKILL leaves: each shim's socket
// /run/containerd/s/<sha256 of "<grpc address>/k8s.io/<id>"> (the scheme
// of runtime/v2/shim.SocketAddress) and go-cni's result cache
// /var/lib/cni/results/<network>-<id>-<interface>. The ids come from the
// state and root folders under W. Only paths that exist are listed.
func containerdHostFiles(l layout) []string {
	ids := map[string]bool{}
	for _, d := range []string{
		l.path("containerd", "state", "io.containerd.runtime.v2.task", "k8s.io"),
		l.path("containerd", "root", "io.containerd.grpc.v1.cri", "sandboxes"),
		l.path("containerd", "root", "io.containerd.grpc.v1.cri", "containers"),
	} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			ids[e.Name()] = true
		}
	}
	var out []string
	for id := range ids {
		sum := sha256.Sum256([]byte(filepath.Join(l.containerdSocket(), "k8s.io", id)))
		for _, p := range []string{
			filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:])),
			filepath.Join("/var/lib/cni/results", cniNetwork+"-"+id+"-eth0"),
			filepath.Join("/var/lib/cni/results", "cni-loopback-"+id+"-lo"),
		} {
			if _, err := os.Lstat(p); err == nil {
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// NetnsPath is where `ip netns add name` pins the namespace.
func NetnsPath(name string) string { return filepath.Join("/run/netns", name) }

// killAll SIGKILLs the cluster's processes until none is left (or 20 s
// pass). Killing a pod's processes by cgroup also takes its container
// init (PID 1 of its pid namespace).
func killAll(l layout, name string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids := clusterProcesses(l, name)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clustertest: processes of %s still running after 20 s: %s", name, describePIDs(pids))
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterProcesses lists the processes that belong to the cluster, never
// this process itself.
func clusterProcesses(l layout, name string) []int {
	self := os.Getpid()
	set := map[int]bool{}
	var netnsIno uint64
	var netnsDev uint64
	if st, err := os.Stat(NetnsPath(name)); err == nil {
		if s, ok := st.Sys().(*syscall.Stat_t); ok {
			netnsIno, netnsDev = s.Ino, s.Dev
		}
	}
	for _, pid := range cgroupPIDs(cgroupName(name)) {
		set[pid] = true
	}
	entries, _ := os.ReadDir("/proc")
	needle := []byte(l.w + "/")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if netnsIno != 0 {
			if st, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil {
				if s, ok := st.Sys().(*syscall.Stat_t); ok && s.Ino == netnsIno && s.Dev == netnsDev {
					set[pid] = true
					continue
				}
			}
		}
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(append(cmd, '/'), needle) {
			set[pid] = true
		}
	}
	delete(set, self)
	pids := make([]int, 0, len(set))
	for p := range set {
		pids = append(pids, p)
	}
	sort.Ints(pids)
	return pids
}

func describePIDs(pids []int) string {
	var parts []string
	for _, p := range pids {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		parts = append(parts, fmt.Sprintf("%d %s", p, strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " ")))
	}
	return strings.Join(parts, "; ")
}

// cgroupRoots are the mounted cgroup hierarchies (v1 and v2).
func cgroupRoots() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var roots []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && (fields[i+1] == "cgroup" || fields[i+1] == "cgroup2") {
				roots = append(roots, unescapeMount(fields[4]))
			}
		}
	}
	sort.Strings(roots)
	return roots
}

// cgroupPIDs lists the processes in group (and below) in every hierarchy.
func cgroupPIDs(group string) []int {
	var pids []int
	for _, root := range cgroupRoots() {
		_ = filepath.WalkDir(filepath.Join(root, group), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// createCgroups makes group in every hierarchy (kubelet requires its
// cgroupRoot to exist in each), with the cpuset hierarchy's cpus and mems
// copied from the parent (a new cpuset is empty, and nothing can join
// it).
func createCgroups(group string) error {
	for _, root := range cgroupRoots() {
		d := filepath.Join(root, group)
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("clustertest: cgroup %s: %w", d, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			parent, err := os.ReadFile(filepath.Join(root, f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(d, f), parent, 0o644); err != nil {
				return fmt.Errorf("clustertest: %s/%s: %w", d, f, err)
			}
		}
	}
	return nil
}

// removeCgroups removes group and everything below it in every hierarchy,
// deepest first. The processes must be gone (killAll).
func removeCgroups(group string) error {
	var errs []error
	for _, root := range cgroupRoots() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(root, group), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := removeCgroupDir(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeCgroupDir retries for a moment: a killed process leaves its
// cgroup a little after it is reaped.
func removeCgroupDir(d string) error {
	var err error
	for range 50 {
		err = syscall.Rmdir(d)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("clustertest: removing cgroup %s: %w", d, err)
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unmountUnder lazily unmounts everything at or below dir, deepest first,
// until nothing is left (a mount can appear twice, stacked).
func unmountUnder(dir string) error {
	for range 10 {
		mps, err := mountsUnder(dir)
		if err != nil {
			return fmt.Errorf("clustertest: %w", err)
		}
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
	mps, _ := mountsUnder(dir)
	if len(mps) > 0 {
		return fmt.Errorf("clustertest: still mounted under %s: %s", dir, strings.Join(mps, ", "))
	}
	return nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// deleteNetns removes the named network namespace (`ip netns del`), if
// it exists; its bridge and veths go with it.
func deleteNetns(name string) error {
	if _, err := os.Stat(NetnsPath(name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	out, err := exec.Command(ipCommand(), "netns", "del", name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("clustertest: ip netns del %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// removeLogLinks deletes kubelet's /var/log/containers symlinks into dir
// (kubelet writes them there whatever its podLogsDir).
func removeLogLinks(dir string) error {
	const logs = "/var/log/containers"
	entries, err := os.ReadDir(logs)
	if err != nil {
		return nil
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(logs, e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, dir+"/") {
			if err := os.Remove(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeAllBut removes dir's entries except keep.
func removeAllBut(dir, keep string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clustertest: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if e.Name() == keep {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("clustertest: %w", err))
		}
	}
	return errors.Join(errs...)
}

func ipCommand() string {
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "ip"
}

// Leftovers lists what of the cluster called name under baseDir is still
// on the machine: its netns, mounts under its work dir, its cgroups, its
// processes, files in its work dir other than logs/. Empty after
// [Teardown].
func Leftovers(baseDir, name string) []string {
	l := layout{w: filepath.Join(baseDir, name)}
	var out []string
	if _, err := os.Stat(NetnsPath(name)); err == nil {
		out = append(out, "netns "+NetnsPath(name))
	}
	if mps, _ := mountsUnder(l.w); len(mps) > 0 {
		out = append(out, "mounts "+strings.Join(mps, ", "))
	}
	for _, root := range cgroupRoots() {
		if _, err := os.Stat(filepath.Join(root, cgroupName(name))); err == nil {
			out = append(out, "cgroup "+filepath.Join(root, cgroupName(name)))
		}
	}
	if pids := clusterProcesses(l, name); len(pids) > 0 {
		out = append(out, "processes "+describePIDs(pids))
	}
	if entries, err := os.ReadDir(l.w); err == nil {
		for _, e := range entries {
			if e.Name() != "logs" {
				out = append(out, "file "+filepath.Join(l.w, e.Name()))
			}
		}
	}
	if entries, err := os.ReadDir("/var/log/containers"); err == nil {
		for _, e := range entries {
			if target, err := os.Readlink(filepath.Join("/var/log/containers", e.Name())); err == nil && strings.HasPrefix(target, l.w+"/") {
				out = append(out, "log link /var/log/containers/"+e.Name())
			}
		}
	}
	return out
}

// Leftovers is [Leftovers] of c, plus the files outside the work dir
// that its Down removed (they must stay gone).
func (c *Cluster) Leftovers() []string {
	out := Leftovers(c.opts.BaseDir, c.Name)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.hostFiles {
		if _, err := os.Lstat(f); err == nil {
			out = append(out, "file "+f)
		}
	}
	return out
}
