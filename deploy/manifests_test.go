package deploy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	manifestDir   = "k8s"
	cmdDir        = "../cmd/banksync"
	nodeDir       = "../node" // the wiring, whose shutdown bounds the pods must allow
	namespace     = "banksync"
	image         = "ghcr.io/banksync/banksync:latest"
	placeholder   = "REPLACE_ME"
	nonRootUID    = 65532 // distroless "nonroot"; the Dockerfile's USER
	kustomization = "kustomization.yaml"
	// secretsFile holds placeholders only and stays out of the
	// kustomization, so applying it can never overwrite real secrets.
	secretsFile = "secrets.yaml"
	// opsListenEnv is core's plain-HTTP address for /healthz, /readyz and
	// /metrics only. Set, probes and Prometheus use it, not the API port,
	// which may require a client certificate the kubelet does not have.
	opsListenEnv = "BANKSYNC_OPS_LISTEN"
)

// component is what each Deployment runs: its subcommand and the port its
// listen variable must name.
type component struct {
	command   string
	listenEnv string
	port      int32
	// required are the variables it cannot run in production without.
	required []string
}

var components = map[string]component{
	"core": {
		command: "core", listenEnv: "BANKSYNC_CORE_LISTEN", port: 8081,
		required: []string{
			"BANKSYNC_CORE_LISTEN", "BANKSYNC_CORE_DB", "BANKSYNC_KAFKA_BROKERS", "BANKSYNC_SERVICE_TOKEN",
			"BANKSYNC_TLS_CERT", "BANKSYNC_TLS_KEY", "BANKSYNC_CLIENT_CA",
			"BANKSYNC_KAFKA_TLS", "BANKSYNC_KAFKA_CA", "BANKSYNC_KAFKA_SASL_MECHANISM", "BANKSYNC_KAFKA_SASL_USER", "BANKSYNC_KAFKA_SASL_PASSWORD_FILE",
		},
	},
	"channel": {
		command: "channel", listenEnv: "BANKSYNC_CHANNEL_LISTEN", port: 8080,
		required: []string{
			"BANKSYNC_CHANNEL_LISTEN", "BANKSYNC_CHANNEL_DB", "BANKSYNC_CORE_URL", "BANKSYNC_KAFKA_BROKERS",
			"BANKSYNC_SERVICE_TOKEN", "BANKSYNC_ADMIN_TOKEN", "BANKSYNC_CURSOR_SECRET", "BANKSYNC_JWT_PUBLIC_KEY",
			"BANKSYNC_CORE_CA", "BANKSYNC_CORE_CERT", "BANKSYNC_CORE_KEY",
			"BANKSYNC_LANES", "BANKSYNC_RATE_TRANSFERS", "BANKSYNC_RATE_READS",
			"BANKSYNC_KAFKA_TLS", "BANKSYNC_KAFKA_CA", "BANKSYNC_KAFKA_SASL_MECHANISM", "BANKSYNC_KAFKA_SASL_USER", "BANKSYNC_KAFKA_SASL_PASSWORD_FILE",
		},
	},
}

// secretEnv must come from a Secret, never a literal or a ConfigMap.
var secretEnv = []string{
	"BANKSYNC_CORE_DB", "BANKSYNC_CHANNEL_DB", "BANKSYNC_SERVICE_TOKEN",
	"BANKSYNC_ADMIN_TOKEN", "BANKSYNC_CURSOR_SECRET", "BANKSYNC_JWT_SECRET",
	"BANKSYNC_KAFKA_SASL_PASSWORD",
}

// goRuntimeEnv are read by the Go runtime itself, not by a flag.
var goRuntimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOGC": true, "GOMAXPROCS": true}

// fileEnv name files the binary reads; each must be a key of a mounted Secret.
var fileEnv = []string{
	"BANKSYNC_TLS_CERT", "BANKSYNC_TLS_KEY", "BANKSYNC_CLIENT_CA",
	"BANKSYNC_CORE_CA", "BANKSYNC_CORE_CERT", "BANKSYNC_CORE_KEY", "BANKSYNC_JWT_PUBLIC_KEY",
	"BANKSYNC_KAFKA_CA", "BANKSYNC_KAFKA_CERT", "BANKSYNC_KAFKA_KEY", "BANKSYNC_KAFKA_SASL_PASSWORD_FILE",
}

// manifests is every object under k8s/, by kind and name.
type manifests struct {
	files         []string // *.yaml names
	kustomization *kustomizationFile
	namespaces    map[string]*corev1.Namespace
	configMaps    map[string]*corev1.ConfigMap
	secrets       map[string]*corev1.Secret
	services      map[string]*corev1.Service
	deployments   map[string]*appsv1.Deployment
	hpas          map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs          map[string]*policyv1.PodDisruptionBudget
	secretFiles   map[string]string // Secret name -> file it is in
}

// kustomizationFile is the part of kustomize's Kustomization used here;
// decoding it strictly refuses anything else.
type kustomizationFile struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

func newManifests() *manifests {
	return &manifests{
		namespaces:  map[string]*corev1.Namespace{},
		configMaps:  map[string]*corev1.ConfigMap{},
		secrets:     map[string]*corev1.Secret{},
		services:    map[string]*corev1.Service{},
		deployments: map[string]*appsv1.Deployment{},
		hpas:        map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		secretFiles: map[string]string{},
	}
}

// docSeparator is a YAML document separator line.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// loadManifests reads and strictly decodes every *.yaml under k8s/.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no *.yaml under %s", manifestDir)
	}
	m := newManifests()
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(file)
		m.files = append(m.files, name)
		if err := m.add(name, data); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	return m
}

// add decodes one file, a stream of documents separated by --- lines.
func (m *manifests) add(file string, data []byte) error {
	if file == kustomization {
		var k kustomizationFile
		if err := decodeStrict(data, &k); err != nil {
			return err
		}
		if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
			return fmt.Errorf("apiVersion %q kind %q, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
		}
		m.kustomization = &k
		return nil
	}
	decoded := 0
	for i, doc := range docSeparator.Split(string(data), -1) {
		if err := m.addDocument(file, []byte(doc)); err != nil {
			return fmt.Errorf("document %d: %w", i+1, err)
		}
		decoded++
	}
	if decoded == 0 {
		return errors.New("no documents")
	}
	return nil
}

// addDocument decodes one document into the API type its apiVersion and
// kind name; a document of comments only is skipped.
func (m *manifests) addDocument(file string, doc []byte) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	if string(js) == "null" {
		return nil
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return err
	}
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		return decodeInto(js, m.namespaces, nil)
	case "v1 ConfigMap":
		return decodeInto(js, m.configMaps, nil)
	case "v1 Secret":
		return decodeInto(js, m.secrets, func(s *corev1.Secret) { m.secretFiles[s.Name] = file })
	case "v1 Service":
		return decodeInto(js, m.services, nil)
	case "apps/v1 Deployment":
		return decodeInto(js, m.deployments, nil)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return decodeInto(js, m.hpas, nil)
	case "policy/v1 PodDisruptionBudget":
		return decodeInto(js, m.pdbs, nil)
	}
	return fmt.Errorf("unknown apiVersion %q kind %q: add its type to the test", tm.APIVersion, tm.Kind)
}

// object is a pointer to a Kubernetes API type.
type object[T any] interface {
	*T
	GetName() string
}

// decodeInto decodes js strictly into a new T and files it by name.
func decodeInto[T any, P object[T]](js []byte, into map[string]P, then func(P)) error {
	obj := P(new(T))
	if err := decodeJSONStrict(js, obj); err != nil {
		return err
	}
	name := obj.GetName()
	if name == "" {
		return errors.New("no metadata.name")
	}
	if _, dup := into[name]; dup {
		return fmt.Errorf("%T %q declared twice", obj, name)
	}
	into[name] = obj
	if then != nil {
		then(obj)
	}
	return nil
}

// decodeStrict decodes one YAML document as the API server would, only
// stricter: a duplicate key, an unknown or misspelled field, and a field in
// the wrong case are all errors.
func decodeStrict(doc []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	return decodeJSONStrict(js, v)
}

func decodeJSONStrict(js []byte, v any) error {
	// sigs.k8s.io/json is the API server's decoder: unlike encoding/json it
	// matches field names case-sensitively.
	strictErrs, err := kjson.UnmarshalStrict(js, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// TestDecoderIsStrict shows the decoder refuses what a typo makes.
func TestDecoderIsStrict(t *testing.T) {
	const good = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replicas: 1\n"
	if err := newManifests().add("x.yaml", []byte(good)); err != nil {
		t.Fatalf("good document: %v", err)
	}
	for name, doc := range map[string]string{
		"misspelled field":        strings.Replace(good, "replicas", "replica", 1),
		"field in wrong case":     strings.Replace(good, "replicas", "Replicas", 1),
		"duplicate key":           good + "  replicas: 2\n",
		"wrong type":              strings.Replace(good, "replicas: 1", "replicas: one", 1),
		"unknown kind":            strings.Replace(good, "kind: Deployment", "kind: Deploymnet", 1),
		"old apiVersion":          strings.Replace(good, "apps/v1", "extensions/v1beta1", 1),
		"duplicate object":        good + "---\n" + good,
		"no name":                 strings.Replace(good, "  name: x\n", "  labels: {}\n", 1),
		"misspelled nested field": "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n  - port: 80\n    targetPort: 8080\n    protocl: TCP\n",
	} {
		if err := newManifests().add("x.yaml", []byte(doc)); err == nil {
			t.Errorf("%s: decoded without error:\n%s", name, doc)
		}
	}
}

func TestKustomizationListsEveryManifestButSecrets(t *testing.T) {
	m := loadManifests(t)
	if m.kustomization == nil {
		t.Fatalf("no %s", kustomization)
	}
	var want []string
	for _, f := range m.files {
		if f != kustomization && f != secretsFile {
			want = append(want, f)
		}
	}
	got := slices.Sorted(slices.Values(m.kustomization.Resources))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kustomization resources (-want +got):\n%s", diff)
	}
	for name, file := range m.secretFiles {
		if file != secretsFile {
			t.Errorf("Secret %s is in %s; Secrets belong in %s, which is never applied with -k", name, file, secretsFile)
		}
	}
}

func TestEverythingInTheNamespace(t *testing.T) {
	m := loadManifests(t)
	ns, ok := m.namespaces[namespace]
	if !ok {
		t.Fatalf("no Namespace %s", namespace)
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("Namespace %s enforces Pod Security %q, want restricted", namespace, got)
	}
	check := func(kind string, o metav1.Object) {
		if o.GetNamespace() != namespace {
			t.Errorf("%s %s is in namespace %q, want %q", kind, o.GetName(), o.GetNamespace(), namespace)
		}
	}
	for _, o := range m.configMaps {
		check("ConfigMap", o)
	}
	for _, o := range m.secrets {
		check("Secret", o)
	}
	for _, o := range m.services {
		check("Service", o)
	}
	for _, o := range m.deployments {
		check("Deployment", o)
	}
	for _, o := range m.hpas {
		check("HorizontalPodAutoscaler", o)
	}
	for _, o := range m.pdbs {
		check("PodDisruptionBudget", o)
	}
}

func TestCoreIsOneReplicaRecreated(t *testing.T) {
	m := loadManifests(t)
	core := mustDeployment(t, m, "core")
	if core.Spec.Replicas == nil || *core.Spec.Replicas != 1 {
		t.Errorf("core replicas = %v, want exactly 1: one writer per ledger database", ptrString(core.Spec.Replicas))
	}
	if core.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("core strategy = %q, want Recreate: a rollout must never run two cores", core.Spec.Strategy.Type)
	}
	for name, hpa := range m.hpas {
		if hpa.Spec.ScaleTargetRef.Name == "core" {
			t.Errorf("HorizontalPodAutoscaler %s scales core, which must stay at one replica", name)
		}
	}
	for name, pdb := range m.pdbs {
		if selects(t, pdb.Spec.Selector, core.Spec.Template.Labels) {
			t.Errorf("PodDisruptionBudget %s covers core: with one replica it would block every node drain", name)
		}
	}
}

func TestChannelScalesOut(t *testing.T) {
	m := loadManifests(t)
	ch := mustDeployment(t, m, "channel")
	if ch.Spec.Replicas == nil || *ch.Spec.Replicas != 3 {
		t.Errorf("channel replicas = %v, want 3", ptrString(ch.Spec.Replicas))
	}
	s := ch.Spec.Strategy
	if s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil {
		t.Fatalf("channel strategy = %q, want RollingUpdate with maxUnavailable 0", s.Type)
	}
	if u := s.RollingUpdate.MaxUnavailable; u == nil || !isZero(*u) {
		t.Errorf("channel maxUnavailable = %v, want 0", u)
	}
	if sg := s.RollingUpdate.MaxSurge; sg != nil && isZero(*sg) {
		t.Errorf("channel maxSurge = 0 with maxUnavailable 0: a rollout could never start")
	}

	var hpa *autoscalingv2.HorizontalPodAutoscaler
	for _, h := range m.hpas {
		if ref := h.Spec.ScaleTargetRef; ref.APIVersion == "apps/v1" && ref.Kind == "Deployment" && ref.Name == "channel" {
			hpa = h
		}
	}
	if hpa == nil {
		t.Fatal("no HorizontalPodAutoscaler targets apps/v1 Deployment channel")
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 3 || hpa.Spec.MaxReplicas != 20 {
		t.Errorf("channel HPA replicas %v…%d, want 3…20", ptrString(hpa.Spec.MinReplicas), hpa.Spec.MaxReplicas)
	}
	cpu := false
	for _, mt := range hpa.Spec.Metrics {
		if mt.Type == autoscalingv2.ResourceMetricSourceType && mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU &&
			mt.Resource.Target.Type == autoscalingv2.UtilizationMetricType && mt.Resource.Target.AverageUtilization != nil {
			cpu = true
			if u := *mt.Resource.Target.AverageUtilization; u < 10 || u > 90 {
				t.Errorf("channel HPA CPU target %d%%, want 10…90", u)
			}
		}
	}
	if !cpu {
		t.Error("channel HPA has no CPU utilisation target")
	}

	var pdbs []*policyv1.PodDisruptionBudget
	for _, p := range m.pdbs {
		if selects(t, p.Spec.Selector, ch.Spec.Template.Labels) {
			pdbs = append(pdbs, p)
		}
	}
	if len(pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets select the channel's pods, want 1", len(pdbs))
	}
	p := pdbs[0].Spec
	switch {
	case p.MinAvailable != nil && p.MaxUnavailable != nil:
		t.Error("channel PDB sets both minAvailable and maxUnavailable")
	case p.MinAvailable != nil && *p.MinAvailable == intstr.FromInt32(2):
	case p.MaxUnavailable != nil && *p.MaxUnavailable == intstr.FromInt32(1):
	default:
		t.Errorf("channel PDB minAvailable %v maxUnavailable %v, want minAvailable 2 or maxUnavailable 1", p.MinAvailable, p.MaxUnavailable)
	}
}

func TestSelectorsMatchPods(t *testing.T) {
	m := loadManifests(t)
	for name, d := range m.deployments {
		if !selects(t, d.Spec.Selector, d.Spec.Template.Labels) {
			t.Errorf("Deployment %s: selector %v does not match its pod labels %v", name, d.Spec.Selector, d.Spec.Template.Labels)
		}
	}
	for name, svc := range m.services {
		if svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("Service %s is %s, want ClusterIP (expose the channel through your ingress)", name, svc.Spec.Type)
		}
		d := m.deployments[name]
		if d == nil {
			t.Errorf("Service %s: no Deployment of the same name", name)
			continue
		}
		if len(svc.Spec.Selector) == 0 {
			t.Errorf("Service %s has no selector", name)
			continue
		}
		for other, od := range m.deployments {
			got := labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(od.Spec.Template.Labels))
			if want := other == name; got != want {
				t.Errorf("Service %s selects Deployment %s's pods: %v, want %v", name, other, got, want)
			}
		}
		c := components[name]
		for _, p := range svc.Spec.Ports {
			if p.Port != c.port {
				t.Errorf("Service %s port %d, want %d", name, p.Port, c.port)
			}
			if got := containerPort(mainContainer(t, d), p.TargetPort); got != c.port {
				t.Errorf("Service %s targetPort %s resolves to container port %d, want %d", name, p.TargetPort.String(), got, c.port)
			}
		}
	}
}

func TestPodsAreLockedDown(t *testing.T) {
	m := loadManifests(t)
	// What each binary may take after SIGTERM: finishing requests, then
	// core flushes its outbox relay and the channel lets its consumer's
	// lanes drain.
	requests := constSeconds(t, nodeDir, "shutdownTimeout")
	shutdownBounds := map[string]time.Duration{
		"core":    requests + constSeconds(t, nodeDir, "relayFlushTimeout"),
		"channel": requests + constSeconds(t, "../kafka", "drainTimeoutDefault"),
	}
	checkTimeout := constSeconds(t, "../http", "healthCheckTimeout")
	for name, c := range components {
		t.Run(name, func(t *testing.T) {
			d := mustDeployment(t, m, name)
			pod := d.Spec.Template.Spec
			psc := pod.SecurityContext
			if psc == nil {
				t.Fatal("no pod securityContext")
			}
			if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Error("pod runAsNonRoot is not true")
			}
			if psc.RunAsUser == nil || *psc.RunAsUser != nonRootUID {
				t.Errorf("pod runAsUser = %v, want %d", ptrString(psc.RunAsUser), nonRootUID)
			}
			if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod seccompProfile = %v, want RuntimeDefault", psc.SeccompProfile)
			}
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("automountServiceAccountToken is not false: banksync never calls the Kubernetes API")
			}
			if len(pod.InitContainers) > 0 || len(pod.Containers) != 1 {
				t.Fatalf("%d containers and %d init containers, want one container", len(pod.Containers), len(pod.InitContainers))
			}
			ctr := pod.Containers[0]
			if ctr.Image != image {
				t.Errorf("image %q, want %q", ctr.Image, image)
			}
			// Configuration only through the environment: flags show in ps.
			if len(ctr.Command) > 0 || !slices.Equal(ctr.Args, []string{c.command}) {
				t.Errorf("command %q args %q, want the image's entrypoint with args [%q]", ctr.Command, ctr.Args, c.command)
			}
			checkContainerSecurity(t, ctr)
			checkResources(t, ctr)

			// Probes and scraping go to the ops port, plain HTTP, when one
			// is set; else to the API port, HTTPS when it serves TLS.
			probePort, scheme := c.port, corev1.URISchemeHTTP
			if ops, set := envValue(t, m, ctr, opsListenEnv); set {
				_, port, err := splitListen(ops)
				if err != nil {
					t.Errorf("%s=%q: %v", opsListenEnv, ops, err)
				}
				probePort = port
			} else if _, tls := envValue(t, m, ctr, "BANKSYNC_TLS_CERT"); tls {
				scheme = corev1.URISchemeHTTPS
			}
			checkProbe(t, ctr, "readiness", ctr.ReadinessProbe, "/readyz", probePort, scheme)
			checkProbe(t, ctr, "liveness", ctr.LivenessProbe, "/healthz", probePort, scheme)
			if ctr.StartupProbe != nil {
				checkProbe(t, ctr, "startup", ctr.StartupProbe, "/healthz", probePort, scheme)
			}
			if p := ctr.ReadinessProbe; p != nil && time.Duration(p.TimeoutSeconds)*time.Second <= checkTimeout {
				t.Errorf("readiness timeoutSeconds %d, want more than /readyz's own %v", p.TimeoutSeconds, checkTimeout)
			}

			grace := time.Duration(ptrValue(pod.TerminationGracePeriodSeconds, corev1.DefaultTerminationGracePeriodSeconds)) * time.Second
			var preStop time.Duration
			if l := ctr.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
				preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
			}
			if bound, ok := shutdownBounds[name]; !ok {
				t.Errorf("no shutdown bound known for %s", name)
			} else if grace <= preStop+bound {
				t.Errorf("terminationGracePeriodSeconds %v, want more than preStop %v + the binary's shutdown bound %v", grace, preStop, bound)
			}

			a := d.Spec.Template.Annotations
			want := map[string]string{
				"prometheus.io/scrape": "true",
				"prometheus.io/path":   "/metrics",
				"prometheus.io/port":   strconv.Itoa(int(probePort)),
				"prometheus.io/scheme": strings.ToLower(string(scheme)),
			}
			for k, v := range want {
				if a[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, a[k], v)
				}
			}
			checkVolumes(t, m, pod)
		})
	}
}

func checkContainerSecurity(t *testing.T, ctr corev1.Container) {
	t.Helper()
	sc := ctr.SecurityContext
	if sc == nil {
		t.Error("no container securityContext")
		return
	}
	if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
		t.Error("container runAsNonRoot is false")
	}
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		t.Error("container runs as root")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("container is privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities %v, want drop [ALL] and add nothing", sc.Capabilities)
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container seccompProfile %q overrides RuntimeDefault", sc.SeccompProfile.Type)
	}
}

func checkResources(t *testing.T, ctr corev1.Container) {
	t.Helper()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := ctr.Resources.Requests[r]
		lim, okLim := ctr.Resources.Limits[r]
		switch {
		case !okReq || !okLim:
			t.Errorf("%s: request %v limit %v, want both", r, req.String(), lim.String())
		case req.Sign() <= 0:
			t.Errorf("%s request %s, want more than zero", r, req.String())
		case req.Cmp(lim) > 0:
			t.Errorf("%s request %s is above its limit %s", r, req.String(), lim.String())
		}
	}
}

func checkProbe(t *testing.T, ctr corev1.Container, kind string, p *corev1.Probe, wantPath string, wantPort int32, wantScheme corev1.URIScheme) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("no %s probe GET %s", kind, wantPath)
		return
	}
	g := p.HTTPGet
	if g.Path != wantPath {
		t.Errorf("%s probe path %q, want %q", kind, g.Path, wantPath)
	}
	if got := containerPort(ctr, g.Port); got != wantPort {
		t.Errorf("%s probe port %s is container port %d, want %d", kind, g.Port.String(), got, wantPort)
	}
	scheme := g.Scheme
	if scheme == "" {
		scheme = corev1.URISchemeHTTP // the kubelet's default
	}
	if scheme != wantScheme {
		t.Errorf("%s probe scheme %s, want %s", kind, scheme, wantScheme)
	}
}

// checkVolumes: every Secret volume exists and is mounted read-only and not
// world-readable; every mount names a volume.
func checkVolumes(t *testing.T, m *manifests, pod corev1.PodSpec) {
	t.Helper()
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mounted := map[string]bool{}
	for _, vm := range pod.Containers[0].VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok {
			t.Errorf("mount %s names no volume", vm.Name)
			continue
		}
		mounted[vm.Name] = true
		if v.Secret != nil && !vm.ReadOnly {
			t.Errorf("Secret volume %s mounted writable", vm.Name)
		}
	}
	for name, v := range volumes {
		if !mounted[name] {
			t.Errorf("volume %s is never mounted", name)
		}
		switch {
		case v.Secret != nil:
			if _, ok := m.secrets[v.Secret.SecretName]; !ok {
				t.Errorf("volume %s: no Secret %q", name, v.Secret.SecretName)
			}
			if mode := ptrValue(v.Secret.DefaultMode, 0o644); mode&0o007 != 0 {
				t.Errorf("volume %s: defaultMode %#o lets any user read the files", name, mode)
			}
		case v.EmptyDir != nil:
			if v.EmptyDir.SizeLimit == nil {
				t.Errorf("emptyDir %s has no sizeLimit", name)
			}
		default:
			t.Errorf("volume %s: only Secret and emptyDir volumes are expected", name)
		}
	}
}

// TestEnvironment checks every variable the Deployments set against the
// binary and the objects they come from.
func TestEnvironment(t *testing.T) {
	m := loadManifests(t)
	known, byCommand := binaryEnvNames(t)
	usedKeys, usedSecrets := references(m)
	for name, c := range components {
		t.Run(name, func(t *testing.T) {
			d := mustDeployment(t, m, name)
			ctr := mainContainer(t, d)
			if len(ctr.EnvFrom) > 0 {
				t.Error("envFrom: name each variable instead, so each is checked")
			}
			set := map[string]corev1.EnvVar{}
			for _, e := range ctr.Env {
				if _, dup := set[e.Name]; dup {
					t.Errorf("%s set twice", e.Name)
				}
				set[e.Name] = e
				switch {
				case goRuntimeEnv[e.Name]:
				case !known[e.Name]:
					t.Errorf("%s: the binary reads no such variable (none of %s/*.go names it)", e.Name, cmdDir)
				case !byCommand[c.command][e.Name]:
					t.Errorf("%s: banksync %s has no flag for it", e.Name, c.command)
				}
				src := e.ValueFrom
				switch {
				case src == nil:
				case src.ConfigMapKeyRef != nil:
					ref := src.ConfigMapKeyRef
					if cm, ok := m.configMaps[ref.Name]; !ok {
						t.Errorf("%s: no ConfigMap %q", e.Name, ref.Name)
					} else if _, ok := cm.Data[ref.Key]; !ok {
						t.Errorf("%s: ConfigMap %s has no key %q", e.Name, ref.Name, ref.Key)
					}
				case src.SecretKeyRef != nil:
					ref := src.SecretKeyRef
					if s, ok := m.secrets[ref.Name]; !ok {
						t.Errorf("%s: no Secret %q", e.Name, ref.Name)
					} else if !slices.Contains(secretKeys(s), ref.Key) {
						t.Errorf("%s: Secret %s has no key %q", e.Name, ref.Name, ref.Key)
					}
				default:
					t.Errorf("%s: only configMapKeyRef and secretKeyRef are expected", e.Name)
				}
				if isOptional(src) {
					t.Errorf("%s is optional: a missing key must stop the pod, not start it on a default", e.Name)
				}
			}
			for _, want := range c.required {
				if _, ok := set[want]; !ok {
					t.Errorf("%s is not set", want)
				}
			}
			for _, v := range secretEnv {
				if e, ok := set[v]; ok && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("%s does not come from a Secret", v)
				}
			}
			if _, ok := set["BANKSYNC_JWT_SECRET"]; ok && name == "channel" {
				t.Error("BANKSYNC_JWT_SECRET is for the demo; production verifies BANKSYNC_JWT_PUBLIC_KEY (and the two exclude each other)")
			}

			listen, _ := envValue(t, m, ctr, c.listenEnv)
			checkListen(t, ctr, c.listenEnv, listen, c.port)
			if ops, set := envValue(t, m, ctr, opsListenEnv); set {
				// The port is the manifest's choice; it must be a container
				// port of its own and reachable from the kubelet.
				_, port, err := splitListen(ops)
				switch {
				case err != nil:
					t.Errorf("%s=%q: %v", opsListenEnv, ops, err)
				case port == c.port:
					t.Errorf("%s=%q is the API's own port %d: the two servers cannot share it", opsListenEnv, ops, c.port)
				default:
					checkListen(t, ctr, opsListenEnv, ops, port)
				}
			}
			if brokers, _ := envValue(t, m, ctr, "BANKSYNC_KAFKA_BROKERS"); brokers == "" || brokers == "embedded" || brokers == "none" {
				t.Errorf("BANKSYNC_KAFKA_BROKERS=%q, want a real Kafka cluster", brokers)
			}
			checkFileEnv(t, m, d.Spec.Template.Spec, set)
		})
	}

	t.Run("shared", func(t *testing.T) {
		core := mainContainer(t, mustDeployment(t, m, "core"))
		ch := mainContainer(t, mustDeployment(t, m, "channel"))
		// One Secret and one ConfigMap entry, so the tiers cannot disagree.
		for _, name := range []string{"BANKSYNC_SERVICE_TOKEN", "BANKSYNC_KAFKA_BROKERS", "BANKSYNC_AMOUNT_MAX"} {
			a, b := envVar(core, name), envVar(ch, name)
			if a == nil || b == nil || !cmp.Equal(a.ValueFrom, b.ValueFrom) || a.Value != b.Value {
				t.Errorf("%s: core and channel do not take it from the same place", name)
			}
		}
		raw, _ := envValue(t, m, ch, "BANKSYNC_CORE_URL")
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("BANKSYNC_CORE_URL=%q: %v", raw, err)
		}
		_, coreTLS := envValue(t, m, core, "BANKSYNC_TLS_CERT")
		_, clientCA := envValue(t, m, core, "BANKSYNC_CLIENT_CA")
		if wantScheme := map[bool]string{true: "https", false: "http"}[coreTLS]; u.Scheme != wantScheme {
			t.Errorf("BANKSYNC_CORE_URL=%q, want %s:// (core serves TLS: %v)", raw, wantScheme, coreTLS)
		}
		svc := m.services["core"]
		if svc == nil {
			t.Fatal("no Service core")
		}
		if want := svc.Name + "." + svc.Namespace + ".svc"; u.Hostname() != want && u.Hostname() != want+".cluster.local" {
			t.Errorf("BANKSYNC_CORE_URL host %q, want the core Service %s", u.Hostname(), want)
		}
		if u.Port() != strconv.Itoa(int(svc.Spec.Ports[0].Port)) {
			t.Errorf("BANKSYNC_CORE_URL port %q, want the core Service's %d", u.Port(), svc.Spec.Ports[0].Port)
		}
		if clientCA {
			for _, name := range []string{"BANKSYNC_CORE_CERT", "BANKSYNC_CORE_KEY"} {
				if envVar(ch, name) == nil {
					t.Errorf("core requires a client certificate but the channel does not set %s", name)
				}
			}
		}
	})

	t.Run("nothing unused", func(t *testing.T) {
		for name, cm := range m.configMaps {
			for key := range cm.Data {
				if !usedKeys["ConfigMap/"+name+"/"+key] {
					t.Errorf("ConfigMap %s key %s is read by no Deployment (a typo?)", name, key)
				}
			}
		}
		for name, s := range m.secrets {
			if !usedSecrets[name] {
				t.Errorf("Secret %s is used by no Deployment", name)
			}
			for _, key := range secretKeys(s) {
				if !usedKeys["Secret/"+name+"/"+key] {
					t.Errorf("Secret %s key %s is read by no Deployment", name, key)
				}
			}
		}
	})
}

// splitListen splits a listen address into its host and a port number.
func splitListen(addr string) (host string, port int32, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("port %q: want a number 1…65535", p)
	}
	return host, int32(n), nil
}

// checkListen: a listen address is on every interface, not loopback, at
// wantPort, and the container declares that port.
func checkListen(t *testing.T, ctr corev1.Container, env, listen string, wantPort int32) {
	t.Helper()
	host, port, err := splitListen(listen)
	if err != nil {
		t.Errorf("%s=%q: %v", env, listen, err)
	}
	if host != "0.0.0.0" && host != "" && host != "::" {
		t.Errorf("%s=%q listens on %q: nothing outside the pod (the kubelet, Prometheus, a Service) could reach it", env, listen, host)
	}
	if port != wantPort || !slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == wantPort }) {
		t.Errorf("%s=%q, container ports %v, want both %d", env, listen, ctr.Ports, wantPort)
	}
}

// checkFileEnv: a variable naming a file names a key of a Secret mounted
// at that directory.
func checkFileEnv(t *testing.T, m *manifests, pod corev1.PodSpec, set map[string]corev1.EnvVar) {
	t.Helper()
	ctr := pod.Containers[0]
	for _, name := range fileEnv {
		if _, ok := set[name]; !ok {
			continue
		}
		file, _ := envValue(t, m, ctr, name)
		dir, base := path.Split(file)
		var secret *corev1.Secret
		for _, vm := range ctr.VolumeMounts {
			if path.Clean(vm.MountPath) != path.Clean(dir) {
				continue
			}
			for _, v := range pod.Volumes {
				if v.Name == vm.Name && v.Secret != nil {
					secret = m.secrets[v.Secret.SecretName]
				}
			}
		}
		switch {
		case secret == nil:
			t.Errorf("%s=%q: no Secret volume is mounted at %s", name, file, dir)
		case !slices.Contains(secretKeys(secret), base):
			t.Errorf("%s=%q: Secret %s has no key %q (keys %q)", name, file, secret.Name, base, secretKeys(secret))
		}
	}
}

func TestSecretsHoldOnlyPlaceholders(t *testing.T) {
	m := loadManifests(t)
	if len(m.secrets) == 0 {
		t.Fatal("no Secrets: the Deployments need them")
	}
	for name, s := range m.secrets {
		if len(s.Data)+len(s.StringData) == 0 {
			t.Errorf("Secret %s has no keys", name)
		}
		for key, v := range s.StringData {
			if v != placeholder {
				t.Errorf("Secret %s stringData %s = %q, want %s: never commit a real secret", name, key, v, placeholder)
			}
		}
		for key, v := range s.Data {
			// Data is base64 in the manifest; the decoder already undid it.
			if string(v) != placeholder {
				t.Errorf("Secret %s data %s = %q (%s), want %s: never commit a real secret",
					name, key, v, base64.StdEncoding.EncodeToString(v), placeholder)
			}
		}
		if s.Type == corev1.SecretTypeTLS {
			for _, key := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
				if !slices.Contains(secretKeys(s), key) {
					t.Errorf("Secret %s of type %s has no %s", name, s.Type, key)
				}
			}
		}
	}
}

// binaryEnvNames returns every BANKSYNC_* name the binary's non-test
// sources mention, and by subcommand the variables its -h lists: built and
// asked, so a flag defined in a shared helper counts too.
func binaryEnvNames(t *testing.T) (all map[string]bool, byCommand map[string]map[string]bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(cmdDir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	quoted := regexp.MustCompile(`"(BANKSYNC_[A-Z_]*)"`)
	all, byCommand = map[string]bool{}, map[string]map[string]bool{}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, mm := range quoted.FindAllStringSubmatch(string(data), -1) {
			all[mm[1]] = true
		}
	}
	bin := filepath.Join(t.TempDir(), "banksync")
	if out, err := exec.Command("go", "build", "-o", bin, "./"+cmdDir).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", cmdDir, err, out)
	}
	listed := regexp.MustCompile(`\[(BANKSYNC_[A-Z_]*)\]`)
	for _, c := range components {
		cmd := exec.Command(bin, c.command, "-h")
		// Without the test's own BANKSYNC_* variables: the binary reads
		// them before -h, and a bad one would print an error instead.
		cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "BANKSYNC_") })
		out, _ := cmd.CombinedOutput() // -h exits non-zero
		byCommand[c.command] = map[string]bool{}
		for _, mm := range listed.FindAllStringSubmatch(string(out), -1) {
			byCommand[c.command][mm[1]] = true
		}
		if len(byCommand[c.command]) == 0 {
			t.Fatalf("banksync %s -h lists no variables:\n%s", c.command, out)
		}
	}
	return all, byCommand
}

// constSeconds reads a constant `name = N * time.Second` from a package's
// non-test sources, so the manifests follow the binary's bounds.
func constSeconds(t *testing.T, dir, name string) time.Duration {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\b` + name + `\s*=\s*(\d+)\s*\*\s*time\.Second\b`)
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if mm := re.FindSubmatch(data); mm != nil {
			n, err := strconv.Atoi(string(mm[1]))
			if err != nil {
				t.Fatal(err)
			}
			return time.Duration(n) * time.Second
		}
	}
	t.Fatalf("no constant %s = N * time.Second in %s: the test reads the binary's bounds from it", name, dir)
	return 0
}

// envValue resolves a container's variable from a literal or a ConfigMap;
// set reports whether it is set at all. A Secret's value is unknown here.
func envValue(t *testing.T, m *manifests, ctr corev1.Container, name string) (value string, set bool) {
	t.Helper()
	e := envVar(ctr, name)
	switch {
	case e == nil:
		return "", false
	case e.ValueFrom == nil:
		return e.Value, true
	case e.ValueFrom.ConfigMapKeyRef != nil:
		ref := e.ValueFrom.ConfigMapKeyRef
		if cm, ok := m.configMaps[ref.Name]; ok {
			return cm.Data[ref.Key], true
		}
	}
	return "", true
}

func envVar(ctr corev1.Container, name string) *corev1.EnvVar {
	for i := range ctr.Env {
		if ctr.Env[i].Name == name {
			return &ctr.Env[i]
		}
	}
	return nil
}

func secretKeys(s *corev1.Secret) []string {
	var keys []string
	for k := range s.Data {
		keys = append(keys, k)
	}
	for k := range s.StringData {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// references returns every ConfigMap and Secret key the Deployments read,
// as "ConfigMap/name/key" and "Secret/name/key", and the Secrets they use.
// A Secret mounted whole uses all its keys.
func references(m *manifests) (keys, secrets map[string]bool) {
	keys, secrets = map[string]bool{}, map[string]bool{}
	for _, d := range m.deployments {
		pod := d.Spec.Template.Spec
		for _, ctr := range pod.Containers {
			for _, e := range ctr.Env {
				switch src := e.ValueFrom; {
				case src == nil:
				case src.ConfigMapKeyRef != nil:
					keys["ConfigMap/"+src.ConfigMapKeyRef.Name+"/"+src.ConfigMapKeyRef.Key] = true
				case src.SecretKeyRef != nil:
					keys["Secret/"+src.SecretKeyRef.Name+"/"+src.SecretKeyRef.Key] = true
					secrets[src.SecretKeyRef.Name] = true
				}
			}
		}
		for _, v := range pod.Volumes {
			if v.Secret == nil {
				continue
			}
			secrets[v.Secret.SecretName] = true
			if s, ok := m.secrets[v.Secret.SecretName]; ok && len(v.Secret.Items) == 0 {
				for _, key := range secretKeys(s) {
					keys["Secret/"+s.Name+"/"+key] = true
				}
			}
			for _, it := range v.Secret.Items {
				keys["Secret/"+v.Secret.SecretName+"/"+it.Key] = true
			}
		}
	}
	return keys, secrets
}

// containerPort resolves a port by number or by name; 0 if it names none.
func containerPort(ctr corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range ctr.Ports {
		if p.Type == intstr.String && cp.Name == p.StrVal || p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return cp.ContainerPort
		}
	}
	return 0
}

func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	if sel == nil || len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		t.Errorf("empty selector %v selects everything", sel)
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("selector %v: %v", sel, err)
		return false
	}
	return s.Matches(labels.Set(podLabels))
}

func mustDeployment(t *testing.T, m *manifests, name string) *appsv1.Deployment {
	t.Helper()
	d, ok := m.deployments[name]
	if !ok {
		t.Fatalf("no Deployment %s", name)
	}
	return d
}

// isOptional reports whether a variable may be missing from its source.
func isOptional(src *corev1.EnvVarSource) bool {
	switch {
	case src == nil:
		return false
	case src.ConfigMapKeyRef != nil:
		return ptrValue(src.ConfigMapKeyRef.Optional, false)
	case src.SecretKeyRef != nil:
		return ptrValue(src.SecretKeyRef.Optional, false)
	}
	return false
}

// mainContainer is a Deployment's one container.
func mainContainer(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("Deployment %s has %d containers, want 1", d.Name, n)
	}
	return d.Spec.Template.Spec.Containers[0]
}

func isZero(v intstr.IntOrString) bool {
	return v.Type == intstr.Int && v.IntVal == 0 || v.Type == intstr.String && v.StrVal == "0%"
}

func ptrValue[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
