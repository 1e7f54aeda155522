package sources

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// ensureToken returns a token to use: the current one, renewed if it is
// due, or a new one.
func (v *vaultClient) ensureToken(ctx context.Context) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.token != "" && (v.renewAt.IsZero() || time.Now().Before(v.renewAt)) {
		return v.token, nil
	}
	if v.token != "" && v.renewable {
		c, _ := v.c.Clone()
		c.SetToken(v.token)
		s, err := c.Auth().Token().RenewSelfWithContext(ctx, 0)
		if err == nil && s != nil && s.Auth != nil && s.Auth.LeaseDuration > 0 {
			vaultRenewals.WithLabelValues("ok").Inc()
			v.setLease(s.Auth.LeaseDuration, s.Auth.Renewable)
			return v.token, nil
		}
		vaultRenewals.WithLabelValues("error").Inc()
	}
	return v.loginLocked(ctx)
}

func (v *vaultClient) setLease(seconds int, renewable bool) {
	v.renewable = renewable
	v.renewAt = time.Time{}
	if seconds > 0 {
		v.renewAt = time.Now().Add(time.Duration(seconds) * time.Second * 2 / 3)
	}
}

// forget drops the token after a 403, so the next request logs in again.
func (v *vaultClient) forget(token string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.token == token {
		v.token = ""
	}
}

func (v *vaultClient) loginLocked(ctx context.Context) (string, error) {
	v.token = ""
	a := v.auth
	var secret *vaultapi.Secret
	var err error
	c, _ := v.c.Clone()
	c.ClearToken()
	switch a.Method {
	case "token":
		b, rerr := os.ReadFile(a.TokenFile)
		if rerr != nil {
			err = fmt.Errorf("reading the Vault token: %w", rerr)
			break
		}
		c.SetToken(strings.TrimSpace(string(b)))
		// Its TTL, to renew it in time. A token whose policies do not
		// allow lookup-self (no default policy) is used as it is.
		secret, err = c.Auth().Token().LookupSelfWithContext(ctx)
		var re *vaultapi.ResponseError
		if err != nil && errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
			secret, err = &vaultapi.Secret{Data: map[string]any{}}, nil
		}
		if err == nil && secret != nil {
			ttl, _ := secret.TokenTTL()
			renewable, _ := secret.TokenIsRenewable()
			v.token = c.Token()
			v.setLease(int(ttl.Seconds()), renewable)
			vaultLogins.WithLabelValues(a.Method, "ok").Inc()
			return v.token, nil
		}
	case "approle":
		b, rerr := os.ReadFile(a.SecretIDFile)
		if rerr != nil {
			err = fmt.Errorf("reading the AppRole secret ID: %w", rerr)
			break
		}
		secret, err = c.Logical().WriteWithContext(ctx, "auth/"+mountOr(a.Mount, "approle")+"/login",
			map[string]any{"role_id": a.RoleID, "secret_id": strings.TrimSpace(string(b))})
	case "kubernetes":
		file := a.ServiceAccountTokenFile
		if file == "" {
			file = "/var/run/secrets/kubernetes.io/serviceaccount/token"
		}
		b, rerr := os.ReadFile(file)
		if rerr != nil {
			err = fmt.Errorf("reading the service account token: %w", rerr)
			break
		}
		secret, err = c.Logical().WriteWithContext(ctx, "auth/"+mountOr(a.Mount, "kubernetes")+"/login",
			map[string]any{"role": a.Role, "jwt": strings.TrimSpace(string(b))})
	}
	if err == nil && (secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "") {
		err = errors.New("the login returned no token")
	}
	if err != nil {
		vaultLogins.WithLabelValues(a.Method, "error").Inc()
		return "", fmt.Errorf("vault login (%s): %w", a.Method, cleanVaultError(err))
	}
	vaultLogins.WithLabelValues(a.Method, "ok").Inc()
	v.token = secret.Auth.ClientToken
	v.setLease(secret.Auth.LeaseDuration, secret.Auth.Renewable)
	return v.token, nil
}

func mountOr(m, def string) string {
	if m = strings.Trim(m, "/"); m != "" {
		return m
	}
	return def
}

// do runs f with a client that carries a valid token; a 403 drops the
// token and f runs once more after a new login.
func (v *vaultClient) do(ctx context.Context, f func(c *vaultapi.Client) error) error {
	for attempt := 0; ; attempt++ {
		tok, err := v.ensureToken(ctx)
		if err != nil {
			return err
		}
		c, err := v.c.Clone()
		if err != nil {
			return err
		}
		c.SetToken(tok)
		err = f(c)
		var re *vaultapi.ResponseError
		if attempt == 0 && errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
			v.forget(tok)
			continue
		}
		return cleanVaultError(err)
	}
}
