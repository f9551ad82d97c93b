package workers

import "time"

// Never, as Config.IdleTTL, turns idle reaping off; as Config.StopGrace,
// sends SIGKILL at once (no grace); as Config.MaxRunDuration, follows no
// runs. A zero duration in Config means the documented default.
const Never time.Duration = -1

// defaultMaxRunDuration is Config.MaxRunDuration's default.
const defaultMaxRunDuration = time.Hour
