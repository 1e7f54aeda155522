package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

// TestConcurrentReviewsKeepTheirOwnAnswers: request bodies, patches and
// answers live in buffers reused from one review to the next; many reviews
// at once each get their own UID and the patch they get when served alone.
func TestConcurrentReviewsKeepTheirOwnAnswers(t *testing.T) {
	m := testMutator(t, cartPresets()...)
	in := fixture(t, "pod-create.json")
	const uid = "0df28fbd-5f5f-11e8-bc74-36e6bb280816"
	if !bytes.Contains(in, []byte(uid)) {
		t.Fatal("the fixture's UID moved")
	}
	alone := reviewOf(t, serve(t, m, in, "application/json"))
	if len(alone.Patch) == 0 {
		t.Fatal("the fixture gets no patch")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*50)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				want := fmt.Sprintf("0df28fbd-5f5f-11e8-bc74-%06d%06d", g, i)
				rec := serve(t, m, bytes.Replace(in, []byte(uid), []byte(want), 1), "application/json")
				var r admissionv1.AdmissionReview
				if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || r.Response == nil {
					errs <- fmt.Errorf("review %s: HTTP %d, %v: %s", want, rec.Code, err, rec.Body)
					continue
				}
				if got := r.Response; string(got.UID) != want || !bytes.Equal(got.Patch, alone.Patch) {
					errs <- fmt.Errorf("review %s answered as %s, patch equal to the lone one's: %t", want, got.UID, bytes.Equal(got.Patch, alone.Patch))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
