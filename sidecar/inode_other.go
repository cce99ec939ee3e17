//go:build !unix

package sidecar

import "os"

// inode returns 0 where files have no inode number: offsets are then not
// resumed across restarts, and rotation is still told by os.SameFile.
//
// TODO: use the Windows file index so that offsets resume there too;
// without it, a restart starts as if no position were known.
func inode(fi os.FileInfo) uint64 { return 0 }
