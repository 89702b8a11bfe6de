package source

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/agent/model"
)

// Decoded is the result of decoding one file.
type Decoded struct {
	// Objects are the documents that decoded into kinds the model reads.
	Objects []model.Object
	// Errors are documents that are not even YAML objects with a kind:
	// the file cannot be trusted. Objects that decode badly (an unknown or
	// mistyped field) are in Objects, with Err set.
	Errors []error
	// Skipped counts documents of kinds the agent does not read.
	Skipped int
}

var (
	scheme = model.NewScheme()
	strict = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
)

// typeMeta is enough of any document to name it in an error.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// Decode reads a multi-document YAML (or JSON) stream. name is used in
// messages ("cluster.yaml document 3").
func Decode(r io.Reader, name string) (Decoded, error) {
	var d Decoder
	return d.Decode(r, name)
}

// A Decoder decodes streams as Decode does and remembers what each
// document decoded into, by a hash of its bytes: decoding a file again
// after a change decodes only the documents that changed, and hands back
// the very objects it decoded before for the others (objects are never
// modified once decoded). The zero value is ready; a Decoder is for one
// file at a time, not for concurrent use.
type Decoder struct {
	docs map[[sha256.Size]byte]docResult
}

// docResult is what one document decodes into, wherever it is in the file.
type docResult struct {
	blank   bool // nothing but comments and space
	skipped bool // a kind the model does not read
	// err is set for a document that is not a YAML object with a kind
	// (the file cannot be trusted) and, with ref, for an object that
	// decodes badly (the object is rejected).
	err error
	obj runtime.Object
	ref model.Ref
}

// Decode reads a multi-document YAML (or JSON) stream, as the package's
// Decode does. It remembers the documents of this stream, and only these,
// when the whole stream was read.
func (d *Decoder) Decode(r io.Reader, name string) (Decoded, error) {
	var out Decoded
	next := make(map[[sha256.Size]byte]docResult, len(d.docs))
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for n := 1; ; n++ {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			d.docs = next
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read %s document %d: %w", name, n, err)
		}
		sum := sha256.Sum256(doc)
		res, ok := d.docs[sum]
		if !ok {
			if res, ok = next[sum]; !ok {
				res = decodeDoc(doc)
			}
		}
		next[sum] = res
		origin := fmt.Sprintf("%s document %d", name, n)
		switch {
		case res.blank:
		case res.skipped:
			out.Skipped++
		case res.obj != nil:
			out.Objects = append(out.Objects, model.Object{Obj: res.obj, Origin: origin})
		case res.ref.Kind != "":
			// A strict error (an unknown or mistyped field) is the
			// object's own problem: the model rejects it and keeps its
			// last good version, like any invalid object.
			out.Objects = append(out.Objects, model.Object{Origin: origin, Err: res.err, Ref: res.ref})
		default:
			out.Errors = append(out.Errors, fmt.Errorf("%s: %w", origin, res.err))
		}
	}
}

// decodeDoc decodes one document.
func decodeDoc(doc []byte) docResult {
	if len(bytes.TrimSpace(stripComments(doc))) == 0 {
		return docResult{blank: true}
	}
	var tm typeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return docResult{err: fmt.Errorf("not valid YAML: %w", err)}
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		return docResult{err: errors.New("apiVersion and kind are required")}
	}
	gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
	if !scheme.Recognizes(gvk) {
		return docResult{skipped: true}
	}
	obj, _, err := strict.Decode(doc, nil, nil)
	if err != nil {
		return docResult{
			err: errors.New(cleanDecodeError(err)),
			ref: model.Ref{Kind: tm.Kind, Key: model.Key{Namespace: tm.Metadata.Namespace, Name: tm.Metadata.Name}},
		}
	}
	return docResult{obj: obj}
}

// cleanDecodeError drops the serializer's boilerplate prefix.
func cleanDecodeError(err error) string {
	s := err.Error()
	if i := strings.Index(s, "strict decoding error: "); i >= 0 {
		s = s[i+len("strict decoding error: "):]
	}
	return s
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) == 0 || t[0] == '#' {
			continue
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}
