// connrate: a TCP connection-rate meter for scripts/bench-traffic (standard library only).
// scripts/bench-traffic builds it with
//   GO111MODULE=off go build -o DIR/connrate scripts/lib/connrate.go
//
// Usage:
//   connrate serve ADDR:PORT                   accept connections and close each one at once
//   connrate dial ADDR:PORT SECONDS WORKERS    WORKERS loops, each opening one connection after
//                                              another for SECONDS: connect (SYN, SYN-ACK, ACK),
//                                              read the server's FIN, close; prints
//                                              "connections N seconds S rate R errors E"
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "serve" {
		serve(os.Args[2])
		return
	}
	if len(os.Args) == 5 && os.Args[1] == "dial" {
		seconds, err1 := strconv.ParseFloat(os.Args[3], 64)
		workers, err2 := strconv.Atoi(os.Args[4])
		if err1 == nil && err2 == nil && seconds > 0 && workers > 0 {
			dial(os.Args[2], time.Duration(seconds*float64(time.Second)), workers)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "usage: connrate serve ADDR:PORT | connrate dial ADDR:PORT SECONDS WORKERS")
	os.Exit(2)
}

func serve(address string) {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connrate:", err)
		os.Exit(1)
	}
	for {
		conn, err := listener.Accept()
		if err != nil {
			continue
		}
		conn.Close()
	}
}

func dial(address string, duration time.Duration, workers int) {
	var done, failed atomic.Int64
	var wait sync.WaitGroup
	start := time.Now()
	deadline := start.Add(duration)
	buffer := make([][]byte, workers)
	for w := 0; w < workers; w++ {
		buffer[w] = make([]byte, 16)
		wait.Add(1)
		go func(buf []byte) {
			defer wait.Done()
			for time.Now().Before(deadline) {
				conn, err := net.DialTimeout("tcp", address, 3*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				conn.SetReadDeadline(time.Now().Add(3 * time.Second))
				_, err = conn.Read(buf)
				conn.Close()
				if err != io.EOF {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		}(buffer[w])
	}
	wait.Wait()
	elapsed := time.Since(start).Seconds()
	fmt.Printf("connections %d seconds %.3f rate %.0f errors %d\n", done.Load(), elapsed, float64(done.Load())/elapsed, failed.Load())
}
