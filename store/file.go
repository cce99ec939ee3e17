package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// checkFile reports an error when the path no longer names the database
// file the store opened: it was removed, renamed or replaced while open.
// SQLite goes on writing to the file it holds open, which neither a later
// process nor a new connection can see, so writing on would lose every
// event without a sign. Moving the file back clears the error.
func (s *Store) checkFile() error {
	fi, err := os.Stat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("database file %s was removed or renamed while open "+
			"(move it back, or restart to start a new one)", s.path)
	case err != nil:
		return fmt.Errorf("checking the database file: %w", err)
	case !os.SameFile(fi, s.file):
		return fmt.Errorf("database file %s was replaced while open "+
			"(restart to use the new one)", s.path)
	}
	return nil
}
