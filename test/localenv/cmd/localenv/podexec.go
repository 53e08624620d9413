package main

import "open-cluster-management.io/cluster-proxy/test/localenv/kubelet"

func podExec(args []string) error { return kubelet.PodExecMain(args) }
