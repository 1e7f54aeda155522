package webhook

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The pod conditions read as sentences a user can act on: which pods,
// how many more, and a plain statement when there are none.
func TestPodsConditionNamesSomePodsAndCountsTheRest(t *testing.T) {
	pods := []types.NamespacedName{{Namespace: "a", Name: "web-1"}, {Namespace: "a", Name: "web-2"}}
	for _, tc := range []struct {
		n       int32
		pods    []types.NamespacedName
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		{0, nil, metav1.ConditionFalse, "None", "every pod created after this preset got it"},
		{2, pods, metav1.ConditionTrue, "PodsMissed", "2 pods created after this preset did not get it: a/web-1, a/web-2"},
		{7, pods, metav1.ConditionTrue, "PodsMissed", "7 pods created after this preset did not get it: a/web-1, a/web-2 and 5 more"},
	} {
		c := podsCondition("PodsMissed", tc.n, "PodsMissed", "pods created after this preset did not get it",
			"every pod created after this preset got it", tc.pods)
		if c.Status != tc.status || c.Reason != tc.reason || c.Message != tc.message {
			t.Errorf("%d pods: got %s %s %q, want %s %s %q", tc.n, c.Status, c.Reason, c.Message, tc.status, tc.reason, tc.message)
		}
	}
}
