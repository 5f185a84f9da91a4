module gosrv

go 1.19
