package demoworker

const rusageThread = 1 // RUSAGE_THREAD
