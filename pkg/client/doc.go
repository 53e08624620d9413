// Package client lets hub-side Go programs reach managed clusters through the
// cluster-proxy tunnel.
//
// The proxy-servers on the hub speak konnectivity's gRPC ProxyService. A
// client authenticates with the proxy-client certificate the addon-manager
// issues (see TLSConfigFromSecrets), dials "<cluster>:443" through a
// proxy-server, and the proxy-agent of that cluster connects the stream to
// its kube-apiserver. This package wraps konnectivity-client:
//
//   - TLSConfigFromSecrets and TLSConfigForHub build the mutual TLS
//     configuration from the Secrets the addon-manager writes;
//     ReloadingTLSConfigForHub builds one that reads them again as they
//     change (certificate renewal, CA rotation), for long-running programs;
//   - Dialer keeps one gRPC connection to a proxy-server for many dials and
//     rebuilds it by itself when the proxy-server goes away;
//   - RESTConfigForCluster turns a Dialer and managed-cluster credentials into
//     a rest.Config for client-go.
//
// A dial to a cluster whose agent is not connected fails at once with a
// *NoAgentError.
package client
