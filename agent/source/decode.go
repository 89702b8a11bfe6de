package source

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

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
	var out Decoded
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for n := 1; ; n++ {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read %s document %d: %w", name, n, err)
		}
		origin := fmt.Sprintf("%s document %d", name, n)
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm typeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			out.Errors = append(out.Errors, fmt.Errorf("%s: not valid YAML: %w", origin, err))
			continue
		}
		if tm.Kind == "" || tm.APIVersion == "" {
			out.Errors = append(out.Errors, fmt.Errorf("%s: apiVersion and kind are required", origin))
			continue
		}
		gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
		if !scheme.Recognizes(gvk) {
			out.Skipped++
			continue
		}
		obj, _, err := strict.Decode(doc, nil, nil)
		if err != nil {
			// A strict error (an unknown or mistyped field) is the
			// object's own problem: the model rejects it and keeps its
			// last good version, like any invalid object.
			out.Objects = append(out.Objects, model.Object{
				Origin: origin,
				Err:    errors.New(cleanDecodeError(err)),
				Ref:    model.Ref{Kind: tm.Kind, Key: model.Key{Namespace: tm.Metadata.Namespace, Name: tm.Metadata.Name}},
			})
			continue
		}
		out.Objects = append(out.Objects, model.Object{Obj: obj, Origin: origin})
	}
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
