package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	vaultapi "github.com/hashicorp/vault/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podpreset/podpreset/test/cluster"
)

// The Consul and Vault dev servers the webhook reads, started in TestMain.
var (
	consulSrv *cluster.Consul
	vaultSrv  *cluster.Vault
	consulKV  *consulapi.KV
	vaultRoot *vaultapi.Client
	// webhookArgs are the flags replica 0 runs with.
	webhookArgs []string
	// consulLog holds everything Consul printed: in dev mode, a line per
	// HTTP request with its URL, so that a test can tell what was never
	// asked.
	consulLog cluster.Buffer
)

// Vault token lifetimes of the webhook's role: short, so that the webhook
// renews its token every few seconds and logs in again when the maximum
// is reached, all through the tests.
const (
	vaultTokenTTL    = "6s"
	vaultTokenMaxTTL = "14s"
)

// vaultPolicy is what the webhook may read in Vault.
const vaultPolicy = `
path "secret/*" { capabilities = ["read"] }
path "kv1/*" { capabilities = ["read"] }
path "pki/issue/*" { capabilities = ["create", "update"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }
`

// startSources starts Consul and Vault, configures Vault (KV v1 and v2,
// PKI, Kubernetes auth against this control plane for the webhook's
// service account), and writes the webhook's sources configuration into
// dir. It returns the configuration's path.
func startSources(ctx context.Context, dir string) (string, error) {
	var err error
	consulLogs := io.Writer(&consulLog)
	if l := cpLogs(); l != nil {
		consulLogs = io.MultiWriter(l, &consulLog)
	}
	if consulSrv, err = cluster.StartConsul(ctx, cp.Root, consulLogs); err != nil {
		return "", err
	}
	if vaultSrv, err = cluster.StartVault(ctx, cp.Root, cpLogs()); err != nil {
		return "", err
	}
	cc := consulapi.DefaultConfig()
	cc.Address = consulSrv.Addr
	cl, err := consulapi.NewClient(cc)
	if err != nil {
		return "", err
	}
	consulKV = cl.KV()
	vc := vaultapi.DefaultConfig()
	vc.Address = vaultSrv.Addr
	if vaultRoot, err = vaultapi.NewClient(vc); err != nil {
		return "", err
	}
	vaultRoot.SetToken(vaultSrv.RootToken)

	// The webhook's service account and a token for it, as the kubelet
	// would project it.
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return "", err
	}
	tokenFile := filepath.Join(dir, "webhook-sa-token")
	tok, err := serviceAccountToken(ctx, cs, cluster.WebhookNamespace, "podpreset-webhook")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		return "", err
	}
	if err := setupVault(ctx, cs); err != nil {
		return "", err
	}
	return cluster.WriteSourcesConfig(dir, consulSrv, vaultSrv, time.Second, map[string]string{
		"method": "kubernetes", "role": "podpreset", "serviceAccountTokenFile": tokenFile})
}

func cpLogs() interface{ Write([]byte) (int, error) } {
	if os.Getenv("E2E_VERBOSE") != "" {
		return os.Stderr
	}
	return nil
}

// serviceAccountToken creates a service account (if missing) and returns
// a one-hour token for it from the TokenRequest API.
func serviceAccountToken(ctx context.Context, cs kubernetes.Interface, ns, name string) (string, error) {
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating service account %s/%s: %w", ns, name, err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

// setupVault configures a fresh (dev, in-memory) Vault: a KV v1 mount at
// kv1/ (KV v2 is at secret/ already), a PKI CA and role web, and
// Kubernetes auth that checks service account tokens with this control
// plane's TokenReview API. It runs again after a Vault restart.
func setupVault(ctx context.Context, cs kubernetes.Interface) error {
	sys := vaultRoot.Sys()
	if err := sys.MountWithContext(ctx, "kv1", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		return fmt.Errorf("mounting kv1: %w", err)
	}
	if err := sys.MountWithContext(ctx, "pki", &vaultapi.MountInput{Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "24h"}}); err != nil {
		return fmt.Errorf("mounting pki: %w", err)
	}
	logical := vaultRoot.Logical()
	if _, err := logical.WriteWithContext(ctx, "pki/root/generate/internal", map[string]any{"common_name": "podpreset e2e CA", "ttl": "24h"}); err != nil {
		return fmt.Errorf("generating the PKI root: %w", err)
	}
	if _, err := logical.WriteWithContext(ctx, "pki/roles/web", map[string]any{
		"allowed_domains": "svc,svc.cluster.local", "allow_subdomains": true, "allow_ip_sans": true, "max_ttl": "1h",
	}); err != nil {
		return fmt.Errorf("creating the PKI role: %w", err)
	}
	if err := sys.PutPolicyWithContext(ctx, "podpreset", vaultPolicy); err != nil {
		return fmt.Errorf("writing the policy: %w", err)
	}
	// Vault reviews tokens as the vault-auth service account, which may
	// create TokenReviews (system:auth-delegator).
	reviewer, err := serviceAccountToken(ctx, cs, cluster.WebhookNamespace, "vault-auth")
	if err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-auth-delegator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: cluster.WebhookNamespace, Name: "vault-auth"}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("binding vault-auth: %w", err)
	}
	if err := sys.EnableAuthWithOptionsWithContext(ctx, "kubernetes", &vaultapi.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		return fmt.Errorf("enabling kubernetes auth: %w", err)
	}
	if _, err := logical.WriteWithContext(ctx, "auth/kubernetes/config", map[string]any{
		"kubernetes_host":      cp.Config.Host,
		"kubernetes_ca_cert":   string(cp.Config.CAData),
		"token_reviewer_jwt":   reviewer,
		"disable_local_ca_jwt": true,
	}); err != nil {
		return fmt.Errorf("configuring kubernetes auth: %w", err)
	}
	if _, err := logical.WriteWithContext(ctx, "auth/kubernetes/role/podpreset", map[string]any{
		"bound_service_account_names":      "podpreset-webhook",
		"bound_service_account_namespaces": cluster.WebhookNamespace,
		"token_policies":                   "podpreset",
		"token_ttl":                        vaultTokenTTL,
		"token_max_ttl":                    vaultTokenMaxTTL,
	}); err != nil {
		return fmt.Errorf("creating the kubernetes auth role: %w", err)
	}
	return nil
}

// restartVault stops Vault, starts it again empty on the same port, and
// configures it again.
func restartVault(ctx context.Context) error {
	vaultSrv.Stop()
	if err := vaultSrv.Start(ctx); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := setupVault(ctx, cs)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
