package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Offset returns where the log tailer stopped reading file: the inode the
// file had and the byte offset reached in it. A file never recorded gives
// 0 and 0, meaning "no position known".
func (s *Store) Offset(ctx context.Context, file string) (inode uint64, offset int64, err error) {
	var ino int64
	q := "SELECT inode, byte_offset FROM tail_offsets WHERE file = ?"
	err = s.r.QueryRowContext(ctx, q, file).Scan(&ino, &offset)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reading offset of %s: %w", file, err)
	}
	// The column is signed; the bits are those of the uint64.
	return uint64(ino), offset, nil
}

// SetOffset records that the log tailer has read file, whose inode is
// inode, up to offset bytes, replacing what was recorded before. A
// negative offset is an error.
func (s *Store) SetOffset(ctx context.Context, file string, inode uint64, offset int64) error {
	if offset < 0 {
		return fmt.Errorf("setting offset of %s: negative offset %d", file, offset)
	}
	const q = `INSERT INTO tail_offsets (file, inode, byte_offset, updated)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (file) DO UPDATE SET inode = excluded.inode,
			byte_offset = excluded.byte_offset, updated = excluded.updated`
	_, err := s.w.ExecContext(ctx, q, file, int64(inode), offset, formatTime(time.Now()))
	if err != nil {
		return fmt.Errorf("setting offset of %s: %w", file, err)
	}
	return nil
}
