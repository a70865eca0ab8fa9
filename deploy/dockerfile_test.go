package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDockerfile checks the image against go.mod and the manifests: the
// builder's Go version, a static build, the user and the ports the pods
// expect.
func TestDockerfile(t *testing.T) {
	insts := dockerInstructions(t, "../Dockerfile")
	var froms, runs, users, exposed, entrypoints []string
	for _, in := range insts {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
		case "RUN":
			runs = append(runs, in.args)
		case "USER":
			users = append(users, in.args)
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, in.args)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("FROM %q: want a builder stage and a final stage", froms)
	}

	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mm := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if mm == nil {
		t.Fatal("no go directive in go.mod")
	}
	wantBuilder := "golang:" + string(mm[1])
	if !slices.ContainsFunc(strings.Fields(froms[0]), func(f string) bool { return f == wantBuilder }) {
		t.Errorf("builder FROM %q, want %s (go.mod says go %s)", froms[0], wantBuilder, mm[1])
	}
	if final := froms[len(froms)-1]; !strings.HasPrefix(final, "gcr.io/distroless/static") {
		t.Errorf("final FROM %q, want gcr.io/distroless/static…: the binary is static", final)
	}

	build := ""
	for _, r := range runs {
		if strings.Contains(r, "go build") {
			build = r
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/banksync", "-o /out/banksync"} {
		if !strings.Contains(build, want) {
			t.Errorf("go build step %q lacks %q", build, want)
		}
	}

	uid := strconv.Itoa(nonRootUID)
	if !slices.Equal(users, []string{uid + ":" + uid}) {
		t.Errorf("USER %q, want %s:%s (the pods' runAsUser)", users, uid, uid)
	}
	if !slices.Equal(entrypoints, []string{`["/banksync"]`}) {
		t.Errorf("ENTRYPOINT %q, want [\"/banksync\"]: the pods pass the subcommand as args", entrypoints)
	}
	m := loadManifests(t)
	var ports []string
	for _, d := range m.deployments {
		for _, p := range mainContainer(t, d).Ports {
			ports = append(ports, strconv.Itoa(int(p.ContainerPort)))
		}
	}
	slices.Sort(ports)
	ports = slices.Compact(ports) // both pods have an ops port 9090
	slices.Sort(exposed)
	if !slices.Equal(exposed, ports) {
		t.Errorf("EXPOSE %q, want the pods' ports %q", exposed, ports)
	}
}

// TestDockerignore: the context leaves out local state and keeps what the
// build reads.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.Trim(line, "/"))
		}
	}
	ignored := func(p string) bool {
		excluded := false
		for _, pat := range patterns {
			neg := strings.HasPrefix(pat, "!")
			pat = strings.TrimPrefix(pat, "!")
			// A pattern matching a directory excludes what is under it.
			for prefix := p; prefix != "."; prefix = filepath.Dir(prefix) {
				if ok, _ := filepath.Match(pat, prefix); ok {
					excluded = !neg
					break
				}
			}
		}
		return excluded
	}
	for _, p := range []string{".git", "data", "testoutput", "data/core.db", "banksync"} {
		if !ignored(p) {
			t.Errorf("%s is in the build context", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "banksync.go", "cmd/banksync/main.go", "web/static/app.html", "sqlite/migrations/ledger/0001.sql", "postgres/migrations/channel/0001.sql"} {
		if ignored(p) {
			t.Errorf("%s is left out of the build context, and the build needs it", p)
		}
	}
}

type dockerInstruction struct{ cmd, args string }

// dockerInstructions reads a Dockerfile's instructions, continuation lines
// joined and comments dropped.
func dockerInstructions(t *testing.T, file string) []dockerInstruction {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstruction
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || line == "" && cur.Len() > 0 {
			continue
		}
		cont := strings.HasSuffix(line, `\`)
		cur.WriteString(strings.TrimSuffix(line, `\`))
		if cont {
			cur.WriteString(" ")
			continue
		}
		if s := strings.Join(strings.Fields(cur.String()), " "); s != "" {
			cmd, args, _ := strings.Cut(s, " ")
			out = append(out, dockerInstruction{strings.ToUpper(cmd), args})
		}
		cur.Reset()
	}
	if len(out) == 0 {
		t.Fatalf("%s: no instructions", file)
	}
	return out
}
