package gitrev

import "testing"

func TestRange(t *testing.T) {
	for _, tc := range []struct{ spec, base, head, err string }{
		{"main..HEAD", "main", "HEAD", ""},
		{"origin/main..feature/x", "origin/main", "feature/x", ""},
		{"v1.2..", "v1.2", "HEAD", ""},
		{"main", "", "", "want BASE..HEAD"},
		{"..HEAD", "", "", "want BASE..HEAD"},
		{"main...HEAD", "", "", "merge-base form is not supported"},
	} {
		base, head, err := Range(tc.spec)
		if base != tc.base || head != tc.head || (err == nil) != (tc.err == "") || err != nil && !contains(err.Error(), tc.err) {
			t.Errorf("Range(%q) = %q, %q, %v; want %q, %q, %q", tc.spec, base, head, err, tc.base, tc.head, tc.err)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
