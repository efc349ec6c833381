using Enroll.Cli;

return await EnrollCli.RunAsync(args);
