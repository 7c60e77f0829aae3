package cli

func cmdDoctor(e *Env, args []string) (int, error) { return 0, nil }
func cmdRun(e *Env, args []string) (int, error)    { return 0, nil }
