// gosrv: a static Go net/http server for tests/servers.rs.
//
// Usage: gosrv ADDR (as http.ListenAndServe takes it, e.g. ":8080"). It answers
// every request with "ok". Built with CGO_ENABLED=0, so it is a static binary
// that makes its syscalls itself, without libc; before listening on a wildcard
// address the Go runtime probes IPv6 by binding [::1]:0 (IPV6_V6ONLY) and
// [::ffff:127.0.0.1]:0 (dual-stack), then listens on [::]:PORT dual-stack.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gosrv ADDR")
		os.Exit(2)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	})
	err := http.ListenAndServe(os.Args[1], handler)
	fmt.Fprintln(os.Stderr, "gosrv:", err)
	os.Exit(1)
}
