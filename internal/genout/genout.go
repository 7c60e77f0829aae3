// Package genout writes a generator output tree into a directory: every file
// via a temporary file and rename (two overlapping generator runs, or a crash
// mid-write, must never leave a truncated unit behind), symlinks likewise.
package genout

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
)

// Write writes files (relative path → content) and links (relative path →
// target) below dir, on several goroutines (a boot may need thousands of
// drop-ins; the output dir is a tmpfs).
func Write(dir string, files map[string][]byte, links map[string]string) error {
	paths := sorted(files)
	dirs := map[string]bool{}
	for _, rel := range paths {
		dirs[filepath.Dir(filepath.Join(dir, rel))] = true
	}
	for _, rel := range sorted(links) {
		dirs[filepath.Dir(filepath.Join(dir, rel))] = true
	}
	for _, d := range sorted(dirs) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create dir: %w", err)
		}
	}
	errs := make([]error, len(paths))
	workers := min(runtime.GOMAXPROCS(0), len(paths))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(paths); i += workers {
				errs[i] = writeFile(filepath.Join(dir, paths[i]), files[paths[i]])
			}
		}(w)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, rel := range sorted(links) {
		if err := writeLink(filepath.Join(dir, rel), links[rel]); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes via a temporary file named after this process (unique
// between overlapping generator runs, no random-name retries) and rename.
func writeFile(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".#%s.%d", filepath.Base(path), os.Getpid()))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

func writeLink(path, target string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create dir: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(path), ".tmp-link-"+filepath.Base(path))
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("symlink %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

func sorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
