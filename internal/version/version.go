// Package version reports the build's version, stamped at link time, and the
// default image that goes with it.
package version

import "regexp"

// Version is the version of this build, set with
// -ldflags "-X open-cluster-management.io/cluster-proxy/internal/version.Version=v1.2.3".
var Version = "dev"

// DefaultImageRepository is where released cluster-proxy images live.
const DefaultImageRepository = "quay.io/open-cluster-management/cluster-proxy"

var releaseVersion = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// DefaultImage is the cluster-proxy image of this build: tagged with the
// version for releases, "latest" otherwise.
func DefaultImage() string {
	if releaseVersion.MatchString(Version) {
		return DefaultImageRepository + ":" + Version
	}
	return DefaultImageRepository + ":latest"
}
