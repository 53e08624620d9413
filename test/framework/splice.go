package framework

import "io"

// Splice copies a to b and b to a until either direction ends (its reader
// returned EOF or an error, or its writer failed), and returns then. The
// other direction goes on until the caller closes a or b, which it must.
func Splice(a, b io.ReadWriter) {
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(a, b); done <- struct{}{} }()
	go func() { _, _ = io.Copy(b, a); done <- struct{}{} }()
	<-done
}
