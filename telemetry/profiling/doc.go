// Package profiling ships the supervisor's own profiles (CPU, heap,
// goroutines, mutex, block) continuously to Pyroscope with pyroscope-go,
// configured from the PYROSCOPE_* environment, with failed uploads counted
// and logged without flooding, and a bounded Stop that uploads the last
// window.
//
// Labels that split the profiles by what the supervisor was doing come
// from internal/proflabel, which works the same whether profiling is on or
// off. It must not import the workers, the sampler or any OTel package.
package profiling
