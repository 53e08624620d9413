//go:build pins

// Package hack pins the versions of the libraries the addon-manager, the agent
// addon and the client library build on (addon-framework v1.3.0, OCM api
// v1.3.0, sdk-go v1.3.0, konnectivity-client v0.37.0), so the module graph is
// resolved, checksummed and proven to compile with our Kubernetes and
// controller-runtime versions before the code that uses them lands.
// `make verify` compiles this file; drop an import once real code imports the
// module.
package hack

import (
	_ "open-cluster-management.io/addon-framework/pkg/addonfactory"
	_ "open-cluster-management.io/addon-framework/pkg/addonmanager"
	_ "open-cluster-management.io/addon-framework/pkg/lease"
	_ "open-cluster-management.io/api/addon/v1beta1"
	_ "open-cluster-management.io/api/client/cluster/clientset/versioned"
	_ "open-cluster-management.io/sdk-go/pkg/certrotation"
	_ "open-cluster-management.io/sdk-go/pkg/tls"
	_ "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"
)
