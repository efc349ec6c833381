using Enroll.Agent;

return await AgentCli.RunAsync(args);
