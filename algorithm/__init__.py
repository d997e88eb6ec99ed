"""The PPO source: a numpy VecEnv for Dark Room, the history-logging callback and one learner per goal."""
