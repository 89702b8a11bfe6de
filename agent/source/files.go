package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/skeinmesh/skein/agent/model"
)

// Update is one delivery from a source: the complete object set, and the
// problems met while reading it.
type Update struct {
	// Objects is every object the source holds now. For a file that failed
	// to read, it holds that file's last good objects.
	Objects []model.Object
	// Errors are documents or files that were rejected.
	Errors []error
}

// FilesConfig configures a file source.
type FilesConfig struct {
	// Paths are YAML files, or directories whose *.yaml, *.yml and *.json
	// files are read (not recursively). Required.
	Paths []string
	// Debounce is how long to wait after a change before reading, so a burst
	// of writes is read once. Zero: 100ms.
	Debounce time.Duration
}

// Files is the standalone source: Kubernetes objects in YAML files, watched
// for changes.
type Files struct {
	cfg  FilesConfig
	log  *zap.Logger
	good map[string][]model.Object // last good objects per file
	// decoders remember each file's documents, so that a change decodes
	// only the documents that changed: at 1,000 Services, decoding all
	// 1.8 MB took most of a second of CPU per change.
	decoders map[string]*Decoder
}

// NewFiles validates cfg and returns a file source.
func NewFiles(cfg FilesConfig, log *zap.Logger) (*Files, error) {
	if len(cfg.Paths) == 0 {
		return nil, errors.New("file source: at least one path is required")
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	return &Files{cfg: cfg, log: log.Named("files"), good: map[string][]model.Object{}, decoders: map[string]*Decoder{}}, nil
}

// Run delivers the objects once, then again after every change, until ctx
// ends. It returns an error only if it cannot watch at all.
func (f *Files) Run(ctx context.Context, update func(Update)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config files: %w", err)
	}
	defer w.Close()
	// Watch the directories: editors and atomic writers replace files by
	// rename, which a watch on the file itself would lose.
	dirs := map[string]bool{}
	for _, p := range f.cfg.Paths {
		d := p
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			d = filepath.Dir(p)
		}
		if !dirs[d] {
			if err := w.Add(d); err != nil {
				return fmt.Errorf("watch %s: %w", d, err)
			}
			dirs[d] = true
		}
	}

	update(f.Read())
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if f.relevant(ev.Name) {
				timer.Reset(f.cfg.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			f.log.Warn("file watch error; re-reading", zap.Error(err))
			timer.Reset(f.cfg.Debounce)
		case <-timer.C:
			update(f.Read())
		}
	}
}

func (f *Files) relevant(name string) bool {
	for _, p := range f.cfg.Paths {
		if name == p || filepath.Dir(name) == p && isConfigFile(name) {
			return true
		}
	}
	return false
}

func isConfigFile(name string) bool {
	if strings.HasPrefix(filepath.Base(name), ".") {
		return false // editors' and atomic writers' temporary files
	}
	switch filepath.Ext(name) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// files expands the configured paths into the files to read, sorted.
func (f *Files) files() ([]string, []error) {
	var out []string
	var errs []error
	for _, p := range f.cfg.Paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", p, err))
			continue
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", p, err))
			continue
		}
		for _, e := range entries {
			if !e.IsDir() && isConfigFile(e.Name()) {
				out = append(out, filepath.Join(p, e.Name()))
			}
		}
	}
	sort.Strings(out)
	return out, errs
}

// Read reads every file now. A file that cannot be read or that has a
// broken document keeps contributing its last good objects; a document
// that is merely invalid is the model's business (it keeps that object's
// last good version).
func (f *Files) Read() Update {
	var u Update
	paths, errs := f.files()
	u.Errors = append(u.Errors, errs...)
	present := map[string]bool{}
	for _, p := range paths {
		present[p] = true
		objs, err := f.readFile(p)
		if err != nil {
			u.Errors = append(u.Errors, err...)
			if old, ok := f.good[p]; ok {
				f.log.Warn("keeping the last good objects of a file that does not read", zap.String("file", p))
				u.Objects = append(u.Objects, old...)
			}
			continue
		}
		f.good[p] = objs
		u.Objects = append(u.Objects, objs...)
	}
	for p := range f.good {
		if !present[p] {
			delete(f.good, p) // a removed file takes its objects with it
		}
	}
	for p := range f.decoders {
		if !present[p] {
			delete(f.decoders, p)
		}
	}
	return u
}

func (f *Files) readFile(p string) ([]model.Object, []error) {
	fh, err := os.Open(p)
	if err != nil {
		return nil, []error{fmt.Errorf("read %s: %w", p, err)}
	}
	defer fh.Close()
	dec := f.decoders[p]
	if dec == nil {
		dec = &Decoder{}
		f.decoders[p] = dec
	}
	d, err := dec.Decode(fh, filepath.Base(p))
	if err != nil {
		return nil, []error{err}
	}
	if len(d.Errors) > 0 {
		return nil, d.Errors
	}
	return d.Objects, nil
}
