package framework

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
)

func TestControlPlaneAssets(t *testing.T) {
	full := t.TempDir()
	for _, b := range []string{KubeAPIServer, Etcd, KubeControllerManager} {
		if err := os.WriteFile(filepath.Join(full, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	partial := t.TempDir()
	if err := os.WriteFile(filepath.Join(partial, Etcd), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExecutable := t.TempDir()
	if err := os.WriteFile(filepath.Join(notExecutable, KubeAPIServer), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		dir      string
		binaries []string
		wantErr  []string
	}{
		{name: "all present", dir: full},
		{name: "subset present", dir: partial, binaries: []string{Etcd}},
		{
			name:    "missing binaries name the directory, the binaries and the make target",
			dir:     partial,
			wantErr: []string{partial, "kube-apiserver, kube-controller-manager", "make controlplane"},
		},
		{
			name:     "a file that is not executable counts as missing",
			dir:      notExecutable,
			binaries: []string{KubeAPIServer},
			wantErr:  []string{"kube-apiserver not found", "make controlplane"},
		},
		{
			name:    "an empty directory",
			dir:     t.TempDir(),
			wantErr: []string{"make controlplane"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			t.Setenv(assetsEnv, tt.dir)
			dir, err := ControlPlaneAssets(tt.binaries...)
			if len(tt.wantErr) == 0 {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(dir).To(Equal(tt.dir))
				return
			}
			g.Expect(err).To(HaveOccurred())
			for _, s := range tt.wantErr {
				g.Expect(err.Error()).To(ContainSubstring(s))
			}
		})
	}
}

func TestNewestBuild(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	g.Expect(newestBuild(dir)).To(BeEmpty())
	for _, v := range []string{"v1.9.0", "v1.36.1", "v1.4.2", "not-a-version"} {
		g.Expect(os.Mkdir(filepath.Join(dir, v), 0o755)).To(Succeed())
	}
	g.Expect(newestBuild(dir)).To(Equal(filepath.Join(dir, "v1.36.1")))
}
