package main

import "time"

func timeAfter() <-chan time.Time { return time.After(100 * time.Millisecond) }
