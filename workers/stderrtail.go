package workers

// StderrTail returns the end of a live worker's stderr as kept for crash
// reports (at most Config.StderrTailBytes bytes of it, invalid UTF-8
// replaced), and false when no live worker has that ID. The text is
// worker-controlled: render it as text.
func (m *Manager) StderrTail(id string) (string, bool) {
	m.mu.Lock()
	w := m.pool.byID[id]
	m.mu.Unlock()
	if w == nil {
		return "", false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stderr.String(), true
}
