package verify

import (
	"sort"
	"strings"
)

// compareFolder compares the messages of the source folders mapped to one
// target folder (from) with the target folder's (to), and fills fr.
//
// Messages are grouped by key: (Message-ID, size) as import keys them (on a
// Bridge target, Message-ID alone; without Message-ID, the SHA-256). Within
// a group, the cheap comparison matches by count; Deep matches by SHA-256,
// and pairs what is left on both sides as "content" differences. Flags
// then pairs the matched messages by their flags, and reports the pairs
// whose flags differ.
func compareFolder(fr *FolderReport, from, to []*entry, o Options, idOnly, labels bool) {
	keyOf := func(e *entry) key {
		switch {
		case idOnly:
			return key{id: e.MessageID}
		case e.MessageID == "":
			return key{id: "sha256:" + e.SHA256}
		}
		return key{id: e.MessageID, size: e.Size}
	}
	ga, gb := map[key][]*entry{}, map[key][]*entry{}
	var keys []key
	// A message that could not be read (a Problem of the report) still has
	// its key (the index's, the server's): it is matched by key, and
	// only its content is not compared.
	for _, e := range from {
		fr.Messages++
		k := keyOf(e)
		if ga[k] == nil && gb[k] == nil {
			keys = append(keys, k)
		}
		ga[k] = append(ga[k], e)
	}
	for _, e := range to {
		fr.TargetMessages++
		k := keyOf(e)
		if ga[k] == nil && gb[k] == nil {
			keys = append(keys, k)
		}
		gb[k] = append(gb[k], e)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].id != keys[j].id {
			return keys[i].id < keys[j].id
		}
		return keys[i].size < keys[j].size
	})
	deep := o.Deep && !idOnly
	for _, k := range keys {
		as, bs := ga[k], gb[k]
		var pa, pb []*entry // matched pairs
		if deep {
			// match by content, in order
			used := make([]bool, len(bs))
			var restA []*entry
			for _, a := range as {
				found := false
				for j, b := range bs {
					if !used[j] && !a.bad && !b.bad && b.SHA256 == a.SHA256 {
						used[j], found = true, true
						pa, pb = append(pa, a), append(pb, b)
						break
					}
				}
				if !found {
					restA = append(restA, a)
				}
			}
			var restB []*entry
			for j, b := range bs {
				if !used[j] {
					restB = append(restB, b)
				}
			}
			// unreadable ones first: paired, not compared
			unreadableFirst := func(x []*entry) {
				sort.SliceStable(x, func(i, j int) bool { return x[i].bad && !x[j].bad })
			}
			unreadableFirst(restA)
			unreadableFirst(restB)
			n := min(len(restA), len(restB))
			for i := 0; i < n; i++ {
				if restA[i].bad || restB[i].bad {
					continue
				}
				fr.Different = append(fr.Different, Difference{What: "content", From: restA[i].Entry, To: restB[i].Entry})
			}
			as, bs = restA[n:], restB[n:]
		} else {
			n := min(len(as), len(bs))
			pa, pb = as[:n], bs[:n]
			as, bs = as[n:], bs[n:]
		}
		for _, a := range as {
			fr.Missing = append(fr.Missing, a.Entry)
		}
		for _, b := range bs {
			fr.Extra = append(fr.Extra, b.Entry)
		}
		if o.Flags {
			fr.Different = append(fr.Different, flagDiffs(pa, pb, idOnly, labels)...)
		}
	}
}

// flagDiffs pairs matched messages (pa[i] with pb[i]: the same message)
// by equal flags (and Proton labels, with labels), and returns the pairs
// whose flags differ. On a Bridge target keywords are left out (Bridge
// keeps none).
func flagDiffs(pa, pb []*entry, idOnly, labels bool) []Difference {
	flagKey := func(e *entry) string {
		var fs []string
		for _, f := range e.Flags {
			if idOnly && !strings.HasPrefix(f, `\`) {
				continue
			}
			fs = append(fs, strings.ToLower(f))
		}
		sort.Strings(fs)
		k := strings.Join(fs, " ")
		if labels {
			k += "\x00" + strings.Join(e.Labels, "\x00")
		}
		return k
	}
	used := make([]bool, len(pb))
	var restA []*entry
	for _, a := range pa {
		ka, found := flagKey(a), false
		for j, b := range pb {
			if !used[j] && flagKey(b) == ka {
				used[j], found = true, true
				break
			}
		}
		if !found {
			restA = append(restA, a)
		}
	}
	var out []Difference
	j := 0
	for _, a := range restA {
		for used[j] {
			j++
		}
		used[j] = true
		out = append(out, Difference{What: "flags", From: a.Entry, To: pb[j].Entry})
	}
	return out
}
